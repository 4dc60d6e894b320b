/**
 * The built crossdock (`node dist/cli.js serve`) as a child process of the test, for what an
 * in-process app cannot show: SIGKILL mid-operation, and a disk that fills up. With `tmpfs`, the
 * child runs in its own mount namespace (`unshare --mount`) where `tmpfs.dir` is a small tmpfs:
 * nothing is mounted in ours, and the mount goes away with the child's namespace. The test reaches
 * files on that tmpfs through `/proc/<pid>/root` (`insideFs`).
 *
 * Also: a plain HTTP client for the registry door (whole bodies, or streamed), and the operator
 * commands (`cache verify`, `gc --dry-run`) run against the same directories.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import http from 'node:http'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { CLI, ensureBuilt, runCli, type CliResult } from '../ops/built-cli.js'
import { readAll, type ReadResponse } from '../../helpers/read-all.js'

export interface ChildCrossdock {
  readonly pid: number
  readonly registryPort: number
  readonly proxyPort: number
  readonly logs: Array<Record<string, any>>
  readonly env: Record<string, string>
  /** `path` (absolute, as the child sees it) from the test's side, through the child's mount namespace. */
  insideFs: (path: string) => string
  /** SIGKILL: no shutdown code runs. Resolves once the process is gone. */
  kill: () => Promise<void>
  /** An operator command with the same configuration (`cache verify`, `gc --dry-run`…), plus `env`. */
  cli: (args: string[], env?: Record<string, string>) => Promise<CliResult>
}

/** Whether this test process may create mount namespaces (root with unshare(1)). */
export function canUnshareMount (): boolean {
  return process.getuid?.() === 0 && spawnSync('unshare', ['--mount', 'true']).status === 0
}

export async function spawnCrossdock (t: Pick<Test, 'teardown'>, env: Record<string, string>, opts: { tmpfs?: { dir: string, size: string } } = {}): Promise<ChildCrossdock> {
  await ensureBuilt()
  const full: Record<string, string> = { PROXY_PORT: '0', REGISTRY_PORT: '0', LISTEN_HOST: '127.0.0.1', LOG_LEVEL: 'debug', CACHE_MIN_FREE: '0', ...env }
  const child: ChildProcess = opts.tmpfs === undefined
    ? spawn(process.execPath, [CLI, 'serve'], { env: { PATH: process.env.PATH ?? '', ...full }, stdio: ['ignore', 'pipe', 'pipe'] })
    // unshare execs sh, which execs node: one PID throughout, so `kill` reaches crossdock itself.
    : spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs -o "size=$CD_TMPFS_SIZE" tmpfs "$CD_TMPFS_DIR" && exec "$CD_NODE" "$CD_CLI" serve'], {
      env: { PATH: process.env.PATH ?? '', ...full, CD_TMPFS_DIR: opts.tmpfs.dir, CD_TMPFS_SIZE: opts.tmpfs.size, CD_NODE: process.execPath, CD_CLI: CLI },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
  const pid = child.pid as number
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  let gone = false
  void exited.then(() => { gone = true })
  t.teardown(async () => { if (!gone) { process.kill(pid, 'SIGKILL'); await exited } })

  const logs: Array<Record<string, any>> = []
  let stderr = ''
  let partial = ''
  child.stdout?.on('data', (c: Buffer) => {
    const lines = (partial + c.toString('utf8')).split('\n')
    partial = lines.pop() ?? ''
    for (const l of lines) if (l.trim() !== '') { try { logs.push(JSON.parse(l)) } catch { logs.push({ msg: l, raw: true }) } }
  })
  child.stderr?.on('data', (c: Buffer) => { stderr += c.toString('utf8') })

  const listening = await new Promise<Record<string, any>>((resolve, reject) => {
    const timer = setInterval(() => {
      const line = logs.find(l => typeof l.msg === 'string' && l.msg.startsWith('crossdock listening'))
      if (line !== undefined) { clearInterval(timer); resolve(line) }
      if (gone) { clearInterval(timer); reject(new Error(`crossdock exited before listening:\n${stderr}\n${logs.map(l => JSON.stringify(l)).join('\n')}`)) }
    }, 20)
  })
  const portOf = (address: unknown): number => Number(String(address).split(':').pop())
  return {
    pid,
    registryPort: portOf(listening.registry),
    proxyPort: portOf(listening.proxy),
    logs,
    env: full,
    insideFs: path => opts.tmpfs === undefined ? path : join(`/proc/${pid}/root`, path),
    kill: async () => { if (!gone) { process.kill(pid, 'SIGKILL'); await exited } },
    cli: async (args, extra = {}) => await runCli(args, { ...full, ...extra }),
  }
}

/** Mount points at or below `dir` in this process's mount table (must stay empty: nothing leaks). */
export function mountsUnder (dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map(l => l.split(' ')[4])
    .filter((mp): mp is string => mp !== undefined && (mp === dir || mp.startsWith(`${dir}/`)))
}

export type DoorResponse = ReadResponse

/** The registry door: a port on 127.0.0.1, or host and port. */
export type DoorAddress = number | { host: string, port: number }

/** A request to the registry door that resolves at the response headers (body unread). */
export async function doorStream (to: DoorAddress, method: string, path: string, opts: { headers?: Record<string, string | number>, body?: Buffer } = {}): Promise<http.IncomingMessage> {
  return await new Promise((resolve, reject) => {
    const { host, port } = typeof to === 'number' ? { host: '127.0.0.1', port: to } : to
    const req = http.request({ host, port, method, path, headers: opts.headers, agent: false }, resolve)
    req.once('error', reject)
    req.end(opts.body)
  })
}

export { readAll }

export async function door (to: DoorAddress, method: string, path: string, opts: { headers?: Record<string, string | number>, body?: Buffer } = {}): Promise<DoorResponse> {
  return await readAll(await doorStream(to, method, path, opts))
}

/** Resolves with the first log line matching `match` (polls: lines arrive over a pipe). */
export async function waitForLog (logs: Array<Record<string, any>>, match: (l: Record<string, any>) => boolean, timeoutMs = 10_000): Promise<Record<string, any> | undefined> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const line = logs.find(match)
    if (line !== undefined || Date.now() > deadline) return line
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}
