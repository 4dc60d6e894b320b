/**
 * Child processes for end-to-end tests: long-running daemons (registries, dockerd, containerd,
 * crossdock) and one-shot commands (docker, skopeo, ctr).
 *
 * Every daemon is a direct child of the test process, so Node reaps it and its `exit` event tells
 * us when it is gone (no zombie polling needed for these). Daemons are tracked in a module-level set
 * and SIGKILLed by PID if the test process exits without its teardown having run (a crash): that is
 * the last line of defence, the normal path is `stop()` from the scope's cleanup.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, readFileSync } from 'node:fs'
import { createServer } from 'node:net'

export interface DaemonOptions {
  env?: Record<string, string | undefined>
  cwd?: string
  /** stdout and stderr are appended here (for post-mortems); stdout is also split into lines. */
  logFile: string
  /** Called for every complete stdout line, in order. */
  onStdoutLine?: (line: string) => void
  /** Called for every complete stderr line, in order. */
  onStderrLine?: (line: string) => void
}

export interface Daemon {
  readonly name: string
  readonly pid: number
  /** Resolves with the exit code (or the signal name) once the process has exited. */
  readonly exited: Promise<number | string>
  hasExited: () => boolean
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. Idempotent. */
  stop: (graceMs?: number) => Promise<void>
  /** The last `max` (≤ 16 KiB) characters of stdout+stderr, for failure messages. */
  logTail: (max?: number) => string
}

const live = new Set<ChildProcess>()
process.once('exit', () => {
  // Synchronous last resort: only PIDs we spawned ourselves and that have not exited yet.
  for (const child of live) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try { process.kill(child.pid, 'SIGKILL') } catch { /* already gone */ }
    }
  }
})

export function startDaemon (name: string, cmd: string, args: string[], opts: DaemonOptions): Daemon {
  const log = createWriteStream(opts.logFile, { flags: 'a' })
  log.write(`--- ${new Date().toISOString()} ${cmd} ${args.join(' ')}\n`)
  const child = spawn(cmd, args, {
    env: cleanEnv(opts.env),
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  if (child.pid === undefined) throw new Error(`${name}: could not spawn ${cmd}`)
  live.add(child)
  // The file stream flushes asynchronously; failure messages read this in-memory tail instead.
  let recent = ''
  const record = (chunk: Buffer | string): void => {
    log.write(chunk)
    recent = (recent + chunk.toString()).slice(-16_384)
  }
  let exitedFlag = false
  const exited = new Promise<number | string>(resolve => {
    child.once('error', err => { log.write(`spawn error: ${String(err)}\n`); exitedFlag = true; live.delete(child); resolve('spawn-error') })
    child.once('exit', (code, signal) => {
      exitedFlag = true
      live.delete(child)
      record(`--- exited code=${code} signal=${signal}\n`)
      resolve(code ?? signal ?? 'unknown')
    })
  })
  splitLines(child.stdout, record, opts.onStdoutLine)
  splitLines(child.stderr, record, opts.onStderrLine)

  let stopping: Promise<void> | undefined
  return {
    name,
    pid: child.pid,
    exited,
    hasExited: () => exitedFlag,
    stop: async (graceMs = 10_000) => {
      stopping ??= (async () => {
        if (!exitedFlag) child.kill('SIGTERM')
        const timer = setTimeout(() => { if (!exitedFlag) child.kill('SIGKILL') }, graceMs)
        await exited
        clearTimeout(timer)
        await new Promise<void>(resolve => log.end(resolve))
      })()
      return await stopping
    },
    logTail: (max = 4000) => recent.slice(-max),
  }
}

function splitLines (stream: NodeJS.ReadableStream, raw: (chunk: Buffer) => void, onLine?: (line: string) => void): void {
  let tail = ''
  stream.on('data', (chunk: Buffer) => {
    raw(chunk)
    if (onLine === undefined) return
    const lines = (tail + chunk.toString('utf8')).split('\n')
    tail = lines.pop() ?? ''
    for (const line of lines) onLine(line)
  })
  stream.on('end', () => { if (tail !== '') onLine?.(tail); tail = '' })
}

export interface RunResult { code: number | null, stdout: string, stderr: string }

/** Runs a command to completion (killed after `timeoutMs`); never throws on a non-zero exit. */
export async function run (cmd: string, args: string[], opts: { env?: Record<string, string | undefined>, timeoutMs?: number, input?: string } = {}): Promise<RunResult> {
  return await new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: cleanEnv(opts.env), stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (c: Buffer) => out.push(c))
    child.stderr.on('data', (c: Buffer) => err.push(c))
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000)
    child.once('error', e => { clearTimeout(timer); reject(e) })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      const stderr = Buffer.concat(err).toString('utf8') + (signal !== null ? `\n[killed by ${signal}]` : '')
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr })
    })
    // A command that exits without reading its stdin makes our write fail with EPIPE; that is
    // not an error of the run (its exit code says what happened).
    child.stdin.on('error', () => {})
    child.stdin.end(opts.input ?? '')
  })
}

/** Like `run`, but throws (with the command and its stderr) unless it exits 0. */
export async function runOk (cmd: string, args: string[], opts: Parameters<typeof run>[2] = {}): Promise<string> {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`)
  return r.stdout
}

/**
 * Polls `check` until it returns a value other than undefined/false, or throws after `timeoutMs`.
 * `abort` is polled too: when it returns a string (e.g. "daemon exited"), waiting stops with that error.
 */
export async function waitFor<T> (what: string, check: () => Promise<T | undefined | false> | T | undefined | false, opts: { timeoutMs?: number, intervalMs?: number, abort?: () => string | undefined } = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000)
  let lastError: unknown
  for (;;) {
    const reason = opts.abort?.()
    if (reason !== undefined) throw new Error(`waiting for ${what}: ${reason}`)
    try {
      const v = await check()
      if (v !== undefined && v !== false) return v
    } catch (err) { lastError = err }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastError !== undefined ? ` (last error: ${String(lastError)})` : ''}`)
    await new Promise(resolve => setTimeout(resolve, opts.intervalMs ?? 50))
  }
}

/** A port on `host` that nothing listens on right now (the kernel picks it). */
export async function freePort (host: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, host, () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => resolve(port))
    })
  })
}

/** Whether `pid` is gone: no /proc entry, or a zombie (exited, waiting to be reaped by someone else). */
export function pidGone (pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Field 3 follows the parenthesised command name, which may itself contain spaces.
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch { return true }
}

/**
 * The environment for children: ours, minus proxy settings that would leak into clients the test did
 * not mean to proxy, plus `extra` (an undefined value removes a variable).
 */
function cleanEnv (extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const k of ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'DOCKER_HOST', 'DOCKER_CONFIG', 'NODE_OPTIONS']) delete env[k]
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k]
    else env[k] = v
  }
  return env
}
