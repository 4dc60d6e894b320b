/**
 * CPU and memory of a contender, read from /proc: a contender is a set of processes (nginx's master
 * and its workers; one process for the others). CPU is user+system over every thread; memory is
 * the summed VmRSS, sampled every 50 ms while a scenario runs (VmHWM is per process and lifelong,
 * so it cannot scope a peak to one scenario).
 */
import { readFileSync, readdirSync } from 'node:fs'

const TICKS = 100 // USER_HZ on Linux

function statFields (pid: number): string[] | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return s.slice(s.lastIndexOf(')') + 2).split(' ')
  } catch { return undefined }
}

/** `root` and every live descendant (nginx workers are children of the master). */
export function processTree (root: number): number[] {
  const parent = new Map<number, number>()
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue
    const f = statFields(Number(e))
    if (f !== undefined) parent.set(Number(e), Number(f[1]))
  }
  const out = [root]
  for (let i = 0; i < out.length; i++) {
    for (const [pid, ppid] of parent) if (ppid === out[i] && !out.includes(pid)) out.push(pid)
  }
  return out
}

/** user+system CPU seconds of `pids` so far (exited children are not counted: read before stop). */
export function cpuSeconds (pids: number[]): number {
  let ticks = 0
  for (const pid of pids) {
    const f = statFields(pid)
    if (f !== undefined) ticks += Number(f[11]) + Number(f[12])
  }
  return ticks / TICKS
}

function statusSum (pids: number[], key: 'VmRSS' | 'VmHWM'): number {
  let kb = 0
  for (const pid of pids) {
    try {
      kb += Number(new RegExp(`${key}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0)
    } catch { /* exited */ }
  }
  return kb / 1024
}

export function rssMiB (pids: number[]): number {
  return statusSum(pids, 'VmRSS')
}

/** Summed lifetime peaks (VmHWM) of `pids`, MiB: an upper bound of the group's peak. */
export function hwmMiB (pids: number[]): number {
  return statusSum(pids, 'VmHWM')
}

/** Samples the summed RSS of `pids()` every `ms` until `stop()`, which returns the peak in MiB. */
export function sampleRss (pids: () => number[], ms = 50): { stop: () => number } {
  let peak = rssMiB(pids())
  const timer = setInterval(() => { peak = Math.max(peak, rssMiB(pids())) }, ms)
  return { stop: () => { clearInterval(timer); return Math.max(peak, rssMiB(pids())) } }
}
