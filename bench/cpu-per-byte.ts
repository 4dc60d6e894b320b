/**
 * CPU per byte and peak RSS (issue 20): crossdock's own CPU time (/proc utime+stime) to move N MB
 * of blobs cold (upstream → fill → client) and warm (cached file → client), through both doors,
 * from CNCF distribution 2.8 on loopback (HTTPS, no delay).
 *
 *   bench client ──GET /v2/library/cpb/blobs/…?ns=docker.io──► crossdock registry door ─┐
 *   bench client ──CONNECT + TLS (crossdock's CA) + GET────────► crossdock MITM door ────┴► distribution
 *
 * A round = one fresh crossdock (empty cache), one door: every blob once (cold), then again (warm),
 * CPB_PARALLEL at a time. Figures: crossdock CPU ms per 100 MB (decimal) moved, and its VmHWM at
 * the end of the round. CPB_BUILDS (comma list of paths to a build's cli.js, default dist/cli.js)
 * compares code versions (or node flags) A/B: rounds interleave the builds, in alternating order per run, so the
 * machine's load drifts over both alike. Figures are printed, never asserted.
 * CPB_MIB (100), CPB_LAYERS (4), CPB_RUNS (5), CPB_PARALLEL (4), CPB_DOORS (registry,mitm),
 * CPB_UPSTREAM_MBIT (per-connection cap through bench/wan/relay.ts; 0, the default: none; with
 * CPB_UPSTREAM_DELAY_MS one-way delay), CPB_WARMUP_MIB (0: none; else a blob of that size pulled cold
 * through the same door before the measured pull, so the figures leave out what a fresh process pays
 * once: JIT compilation of the cold path, the first upstream TLS handshake; a 1.3 MB cold pull cost a
 * fresh process 120-200 ms of CPU, 30-100 ms after a 4 MiB warm-up pull) and
 * CPB_FLOOR=1 (first measure what the same bytes cost the bench process itself, stage by stage:
 * bench/cpu/floor.ts), CPB_CROSSDOCK_ENV (JSON) and CPB_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`) tune it.
 * Needs root and the private namespace `npm run bench -- bench/cpu-per-byte.ts` enters.
 */
import { spawn } from 'node:child_process'
import http from 'node:http'
import tls from 'node:tls'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import {
  createScope, startDistribution, seedImage, startCrossdock, freePort, CROSSDOCK_CLI, FIXTURE,
  type Scope, type Crossdock,
} from '../test/helpers/e2e/index.js'
import { hwmMiB } from './peers/procstat.js'
import { median } from './peers/stats.js'
import { ROOT } from './lib.js'
import { startWan } from './wan/relay.js'
import { measureFloor } from './cpu/floor.js'

const UP = '127.0.0.51' // distribution
const CD = '127.0.0.52' // crossdock
const HUB = 'registry-1.docker.io'
const TOTAL_MIB = Number(process.env.CPB_MIB ?? 100)
const LAYERS = Number(process.env.CPB_LAYERS ?? 4)
const RUNS = Number(process.env.CPB_RUNS ?? 5)
const PARALLEL = Number(process.env.CPB_PARALLEL ?? 4)
const DOORS = (process.env.CPB_DOORS ?? 'registry,mitm').split(',') as Door[]
// A build: the path of its cli.js, optionally followed by node flags (`dist/cli.js --max-semi-space-size=4`).
const BUILDS = (process.env.CPB_BUILDS ?? CROSSDOCK_CLI).split(',').map(p => p.startsWith('/') ? p : join(ROOT, p))
const EXTRA_ENV = process.env.CPB_CROSSDOCK_ENV !== undefined ? JSON.parse(process.env.CPB_CROSSDOCK_ENV) as Record<string, string> : {}
// Per-connection cap of the upstream (Mbit/s; 0: none), through the WAN relay: a paced fill arrives
// in small pieces, so each write and each reader's read moves fewer bytes than on loopback.
const UPSTREAM_MBIT = Number(process.env.CPB_UPSTREAM_MBIT ?? 0)
const UPSTREAM_DELAY_MS = Number(process.env.CPB_UPSTREAM_DELAY_MS ?? 0)
const WARMUP_MIB = Number(process.env.CPB_WARMUP_MIB ?? 0)
// Count crossdock's system calls during the cold pull (strace -c -f): slows it, so CPU figures of
// such a run mean nothing, but the counts say how many writes and reads moved the bytes.
const STRACE = process.env.CPB_STRACE === '1'
const FLOOR = process.env.CPB_FLOOR === '1'
const NODE_ARGS = process.env.CPB_NODE_ARGS?.split(' ').filter(Boolean) ?? []
type Door = 'registry' | 'mitm'

if (process.env.CROSSDOCK_NETNS !== '1') {
  console.log('cpu-per-byte: skipped (needs root and the private network namespace of `npm run bench`)')
  process.exit(0)
}

const cleanups: Array<() => Promise<void>> = []
const scope: Scope = createScope({ teardown: (fn: () => Promise<void>) => { cleanups.push(fn) }, passing: () => true, comment: console.log, fail: console.log } as never, 'cpb')
const loadavg = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')

const upstream = await startDistribution(scope, { host: UP, name: 'upstream' })
const image = await seedImage(scope, upstream, 'library/cpb', '1', { seed: 'cpb', randomBytes: Math.round(TOTAL_MIB * 1024 * 1024 / LAYERS), randomLayers: LAYERS })
const blobs = image.layers
const warmup = WARMUP_MIB > 0
  ? (await seedImage(scope, upstream, 'library/cpbwarm', '1', { seed: 'cpbwarm', randomBytes: Math.round(WARMUP_MIB * 1024 * 1024), randomLayers: 1 })).layers[0]
  : undefined
const totalBytes = blobs.reduce((n, l) => n + l.size, 0)
const wan = UPSTREAM_MBIT > 0
  ? await startWan({ host: UP, port: 443, target: { host: UP, port: Number(upstream.address.split(':')[1]) }, delayMs: UPSTREAM_DELAY_MS, linkBps: 0, connBps: UPSTREAM_MBIT * 1e6 })
  : undefined
const upstreamAddress = wan !== undefined ? `${UP}:443` : upstream.address
console.log(`cpu-per-byte: ${blobs.length} blobs, ${(totalBytes / 1e6).toFixed(1)} MB${warmup !== undefined ? ` (after a ${WARMUP_MIB} MiB warm-up pull)` : ''}; ${RUNS} runs × ${BUILDS.length} builds × doors ${DOORS.join(',')}; ${PARALLEL} parallel; upstream ${UPSTREAM_MBIT > 0 ? `${UPSTREAM_MBIT} Mbit/s per connection, ${UPSTREAM_DELAY_MS} ms each way` : 'unthrottled'}; load ${loadavg()}`)

/** GETs a blob through `door` and counts its bytes (kept nowhere); fails on a short body. */
async function getBlob (cd: Crossdock, registryPort: number, door: Door, digest: string, size: number, repository = 'library/cpb'): Promise<void> {
  const path = `/v2/${repository}/blobs/${digest}`
  const socket = door === 'mitm' ? await mitmSocket(cd) : undefined
  await new Promise<void>((resolve, reject) => {
    const req = http.request({
      ...(socket !== undefined ? { createConnection: () => socket, path } : { host: CD, port: registryPort, path: `${path}?ns=docker.io`, agent: false }),
      headers: { host: socket !== undefined ? HUB : `${CD}:${registryPort}` },
    }, res => {
      let n = 0
      res.on('data', (c: Buffer) => { n += c.length })
      res.on('end', () => {
        socket?.destroy()
        if (res.statusCode !== 200 || n !== size) reject(new Error(`${door} ${digest}: ${res.statusCode}, ${n} of ${size} bytes`))
        else resolve()
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

async function mitmSocket (cd: Crossdock): Promise<tls.TLSSocket> {
  const raw = await new Promise<import('node:net').Socket>((resolve, reject) => {
    http.request({ host: CD, port: cd.proxyPort, method: 'CONNECT', path: `${HUB}:443` })
      .once('connect', (res, s) => res.statusCode === 200 ? resolve(s) : reject(new Error(`CONNECT ${res.statusCode}`)))
      .once('error', reject).end()
  })
  const socket = tls.connect({ socket: raw, servername: HUB, ca: readFileSync(cd.caCert, 'utf8') })
  await new Promise<void>((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject) })
  return socket
}

/** [user, system] CPU seconds of `pid` so far (every thread: libuv's file-system pool too). */
function cpuSplit (pid: number): [number, number] {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return [Number(f[11]) / 100, Number(f[12]) / 100]
}

let lastSys = 0
let lastWall = 0
async function pullAll (cd: Crossdock, registryPort: number, door: Door): Promise<number> {
  const pid = cd.pid() as number
  const [user0, sys0] = cpuSplit(pid)
  const t0 = performance.now()
  let next = 0
  await Promise.all(Array.from({ length: PARALLEL }, async () => {
    while (next < blobs.length) {
      const b = blobs[next++]
      await getBlob(cd, registryPort, door, b.digest, b.size)
    }
  }))
  lastWall = (performance.now() - t0) / 1000
  const [user1, sys1] = cpuSplit(pid)
  lastSys = sys1 - sys0
  return user1 - user0 + lastSys
}

/** strace -c -f attached to `pid` (every thread); `stop` returns the counts of the busiest calls. */
async function strace (pid: number, out: string): Promise<{ stop: () => Promise<string> }> {
  const proc = spawn('strace', ['-c', '-f', '-p', String(pid), '-o', out, '-e', 'trace=read,write,writev,pread64,pwritev,pwritev2,epoll_wait,epoll_pwait,futex,mmap,munmap,madvise'], { stdio: ['ignore', 'ignore', 'pipe'] })
  await new Promise<void>((resolve, reject) => {
    let err = ''
    proc.stderr.on('data', (d: Buffer) => { err += d.toString(); if (/attached/.test(err)) resolve() })
    proc.once('exit', code => reject(new Error(`strace exited ${code}: ${err}`)))
  })
  return {
    stop: async () => {
      const exited = new Promise(resolve => proc.once('exit', resolve))
      proc.kill('SIGINT')
      await exited
      return readFileSync(out, 'utf8').split('\n').filter(l => /^\s*\d/.test(l)).map(l => l.trim().split(/\s+/)).map(f => `  ${f[f.length - 1]} ${f[3]}`).join('\n')
    },
  }
}

const floor = FLOOR ? await measureFloor({ upstream: upstream.address, caFile: FIXTURE.testCa, repository: 'library/cpb', blobs, runs: RUNS }) : undefined
if (floor !== undefined) console.log(floor)

interface Round { cold: number, coldSys: number, coldWall: number, warm: number, warmSys: number, warmWall: number, hwm: number, idle: number }
const rounds = new Map<string, Round[]>() // `${build}/${door}`
let n = 0
try {
  for (let run = 1; run <= RUNS; run++) {
    const order = run % 2 === 1 ? BUILDS : [...BUILDS].reverse()
    for (const build of order) {
      for (const door of DOORS) {
        const registryPort = await freePort(CD)
        const cd = await startCrossdock(scope, {
          host: CD, name: `cd-${n++}`, registryPort, cli: build.split(' ')[0], nodeArgs: [...NODE_ARGS, ...build.split(' ').slice(1)],
          connectTo: { [`${HUB}:443`]: upstreamAddress },
          env: { LOG_LEVEL: 'info', ...EXTRA_ENV },
        })
        const idle = hwmMiB([cd.pid() as number])
        if (warmup !== undefined) await getBlob(cd, registryPort, door, warmup.digest, warmup.size, 'library/cpbwarm')
        const tracer = STRACE ? await strace(cd.pid() as number, scope.path(`strace-${n}.txt`)) : undefined
        const cold = await pullAll(cd, registryPort, door)
        if (tracer !== undefined) console.log(`syscalls during the cold pull (${build.replace(ROOT, '')}, ${door}):\n${await tracer.stop()}`)
        const coldSys = lastSys
        const coldWall = lastWall
        const warm = await pullAll(cd, registryPort, door)
        const r = { cold, coldSys, coldWall, warm, warmSys: lastSys, warmWall: lastWall, hwm: hwmMiB([cd.pid() as number]), idle }
        const status = readFileSync(`/proc/${cd.pid() as number}/status`, 'utf8')
        const kinds = ['RssAnon', 'RssFile'].map(k => `${k} ${(Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1]) / 1024).toFixed(0)}`).join(', ')
        await cd.stop()
        rmSync(cd.dirs.cache, { recursive: true, force: true })
        const k = `${build}/${door}`
        rounds.set(k, [...(rounds.get(k) ?? []), r])
        console.log(`run ${run} ${build.replace(ROOT, '')} ${door}: cold ${(r.cold * 1000).toFixed(0)} ms (sys ${(r.coldSys * 1000).toFixed(0)}; wall ${r.coldWall.toFixed(2)} s), warm ${(r.warm * 1000).toFixed(0)} ms (sys ${(r.warmSys * 1000).toFixed(0)}; wall ${r.warmWall.toFixed(2)} s) CPU; VmHWM ${r.hwm.toFixed(0)} MiB (${r.idle.toFixed(0)} at start; now ${kinds} MiB)`)
      }
    }
  }
} finally {
  await wan?.close()
  for (const c of cleanups.reverse()) await c().catch(() => {})
}

const per100MB = (s: number): string => (s * 1000 * 100e6 / totalBytes).toFixed(0)
console.log(`\n## crossdock CPU per 100 MB (median of ${RUNS}; all runs in brackets) and peak RSS; load ${loadavg()}\n`)
console.log('| build | door | cold ms / 100 MB | warm ms / 100 MB | VmHWM MiB max (at start) |')
console.log('|---|---|---:|---:|---:|')
for (const build of BUILDS) {
  for (const door of DOORS) {
    const rs = rounds.get(`${build}/${door}`) ?? []
    const runs = (k: 'cold' | 'warm'): string => rs.map(r => per100MB(r[k])).join(', ')
    console.log(`| ${build.replace(ROOT, '')} | ${door} | ${per100MB(median(rs.map(r => r.cold)))} (${runs('cold')}) | ${per100MB(median(rs.map(r => r.warm)))} (${runs('warm')}) | ${Math.max(...rs.map(r => r.hwm)).toFixed(0)} (${Math.max(...rs.map(r => r.idle)).toFixed(0)}) |`)
  }
}
