/**
 * The built service (`node dist/cli.js serve`) as a child process, configured only through its
 * environment like an operator would, with every directory under the scope and its upstreams
 * pointed at loopback registries by UPSTREAM_CONNECT_TO (real names kept for SNI, Host and
 * certificate checks; the fixture CA trusted via UPSTREAM_CA_FILE).
 *
 * stdout is pino JSON, one line per request or tunnel: every line is parsed into `logs` so tests can
 * assert on what crossdock saw. Ready means `GET http://<host>:<proxyPort>/` answered 200. `stop()`
 * then `start()` restarts it on the same port and directories (the cache and CA survive).
 */
import { existsSync, mkdirSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { startDaemon, waitFor, freePort, type Daemon } from './daemon.js'
import { FIXTURE, REPO_ROOT } from './pki.js'
import type { Scope } from './scope.js'

export const CROSSDOCK_CLI = join(REPO_ROOT, 'dist/cli.js')

export interface CrossdockOptions {
  /** LISTEN_HOST: the loopback address of this test file. */
  host: string
  /** PROXY_PORT (default: a free port on `host`, kept across restarts). */
  proxyPort?: number
  /** REGISTRY_PORT (default 0: crossdock picks). */
  registryPort?: number
  /** UPSTREAM_CONNECT_TO as pairs, e.g. { 'registry-1.docker.io:443': '127.0.0.12:5443' }. */
  connectTo?: Record<string, string>
  /** Anything else (REGISTRIES, HTPASSWD_FILE, …); wins over the defaults above. */
  env?: Record<string, string>
  /** Names the dir under the scope (default `crossdock`). */
  name?: string
  /** The entry point to run (default CROSSDOCK_CLI): a bench compares builds A/B. */
  cli?: string
  /** Node flags before the entry point (e.g. `--cpu-prof`, which NODE_OPTIONS does not take). */
  nodeArgs?: string[]
  /** How long a start may take to answer (default 20 s; several replicas starting at once on a loaded machine need more). */
  readyTimeoutMs?: number
}

export type LogLine = Record<string, unknown> & { msg?: string }

export interface Crossdock {
  readonly host: string
  readonly proxyPort: number
  /** `http://host:proxyPort`: what clients put in HTTPS_PROXY. */
  readonly proxyUrl: string
  /** `host:port` of the registry door from the "crossdock listening" line; '' when it has none. */
  readonly registryAddress: string
  /** `$CA_DIR/ca.crt`, the root clients must trust (exists once started). */
  readonly caCert: string
  readonly dirs: { ca: string, cache: string, storage: string }
  /** Every stdout line since the first start, parsed (non-JSON lines as `{ msg, raw: true }`). */
  readonly logs: LogLine[]
  /**
   * The first log line matching `match`, waiting up to `timeoutMs` (default 5 s) for it: crossdock
   * writes a request's line when the response closes, which may be after the client has exited.
   * Undefined if none came, so tests can assert on it.
   */
  waitForLog: (match: (line: LogLine) => boolean, timeoutMs?: number) => Promise<LogLine | undefined>
  readonly pid: () => number | undefined
  running: () => boolean
  /**
   * (Re)starts on the same ports and directories. `env` entries are merged into the environment
   * for this and every later start (e.g. `{ ENABLE_MANIFEST_CACHE: 'true' }` on a warm cache).
   */
  start: (env?: Record<string, string>) => Promise<void>
  stop: () => Promise<void>
  /** SIGKILL (a crash: no shutdown code runs); resolves once the process has exited. */
  kill: () => Promise<void>
}

export function connectToValue (pairs: Record<string, string>): string {
  return Object.entries(pairs).map(([from, to]) => `${from}:${to}`).join(',')
}

export async function startCrossdock (scope: Scope, opts: CrossdockOptions): Promise<Crossdock> {
  const cli = opts.cli ?? CROSSDOCK_CLI
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`npm run build\` (npm test does)`)
  const base = scope.path(opts.name ?? 'crossdock')
  const dirs = { ca: `${base}/ca`, cache: `${base}/cache`, storage: `${base}/registry` }
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true })
  const proxyPort = opts.proxyPort ?? await freePort(opts.host)
  const logs: LogLine[] = []
  const env: Record<string, string> = {
    PROXY_PORT: String(proxyPort),
    REGISTRY_PORT: String(opts.registryPort ?? 0),
    LISTEN_HOST: opts.host,
    CA_DIR: dirs.ca,
    CACHE_DIR: dirs.cache,
    REGISTRY_STORAGE_DIR: dirs.storage,
    UPSTREAM_CONNECT_TO: connectToValue(opts.connectTo ?? {}),
    UPSTREAM_CA_FILE: FIXTURE.testCa,
    LOG_LEVEL: 'debug',
    ...opts.env,
  }

  let daemon: Daemon | undefined
  const start = async (extraEnv: Record<string, string> = {}): Promise<void> => {
    if (daemon !== undefined && !daemon.hasExited()) throw new Error('crossdock: already running')
    Object.assign(env, extraEnv)
    const d = startDaemon('crossdock', process.execPath, [...(opts.nodeArgs ?? []), cli, 'serve'], {
      env,
      cwd: base,
      logFile: `${base}/crossdock.log`,
      onStdoutLine: line => {
        if (line.trim() === '') return
        try { logs.push(JSON.parse(line) as LogLine) } catch { logs.push({ msg: line, raw: true }) }
      },
    })
    daemon = d
    await waitFor(`crossdock GET http://${opts.host}:${proxyPort}/ to answer 200`, async () => await getStatus(opts.host, proxyPort, '/') === 200, {
      timeoutMs: opts.readyTimeoutMs ?? 20_000,
      abort: () => d.hasExited() ? `exited:\n${d.logTail()}` : undefined,
    })
  }
  const stop = async (): Promise<void> => { await daemon?.stop(5_000) }
  const kill = async (): Promise<void> => {
    const d = daemon
    if (d === undefined || d.hasExited()) return
    process.kill(d.pid, 'SIGKILL')
    await d.exited
    await d.stop(0) // already gone: only closes its log file
  }
  scope.defer('stop crossdock', stop)
  scope.attachLog('crossdock', () => daemon?.logTail(8000) ?? '')
  await start()

  return {
    host: opts.host,
    proxyPort,
    proxyUrl: `http://${opts.host}:${proxyPort}`,
    // REGISTRY_PORT=0 lets crossdock pick, so the address comes from its startup line.
    get registryAddress () {
      const line = [...logs].reverse().find(l => typeof l.proxy === 'string' && 'registry' in l)
      return typeof line?.registry === 'string' ? line.registry : ''
    },
    caCert: join(dirs.ca, 'ca.crt'),
    dirs,
    logs,
    waitForLog: async (match, timeoutMs = 5000) =>
      await waitFor('a crossdock log line', () => logs.find(match), { timeoutMs, intervalMs: 20 }).catch(() => undefined),
    pid: () => daemon?.pid,
    running: () => daemon !== undefined && !daemon.hasExited(),
    start,
    stop,
    kill,
  }
}

async function getStatus (host: string, port: number, path: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = request({ host, port, path, agent: false, timeout: 2000 }, res => { res.resume(); resolve(res.statusCode ?? 0) })
    req.once('timeout', () => req.destroy(new Error('timeout')))
    req.once('error', reject)
    req.end()
  })
}
