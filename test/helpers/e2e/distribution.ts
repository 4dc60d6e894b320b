/**
 * A real upstream registry: CNCF distribution 2.8 (Debian's `docker-registry serve FILE`), on a
 * loopback address, with TLS from the fixture certificate (or plain HTTP), optional htpasswd basic
 * auth and deletes enabled.
 *
 * Its access log (combined format, query string included) goes to stdout; we parse every line so
 * tests can count what reached the upstream. The logrus lines go to stderr, where "listening on
 * ADDR" tells us the port when the kernel picked it. `stop()` and `start()` may alternate: the
 * storage, the port and the accumulated access log survive a restart ("upstream is down" tests).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { request as httpRequest } from 'node:http'
import { startDaemon, runOk, waitFor, type Daemon } from './daemon.js'
import { FIXTURE } from './pki.js'
import type { Scope } from './scope.js'

export interface DistributionOptions {
  /** Loopback address to bind, e.g. 127.0.0.12 (the fixture cert covers 127.0.0.10–60). */
  host: string
  /** 0 (default): the kernel picks one at first start; restarts reuse it. */
  port?: number
  /** Serve HTTPS with test/fixtures/upstream.crt (default true). */
  tls?: boolean
  /** Turn on htpasswd basic auth with this one user. */
  auth?: { user: string, password: string }
  /** Storage root; defaults to `<scope>/<name>/data`. Two instances may share one. */
  storageDir?: string
  /** Names the files under the scope dir (default `registry`). */
  name?: string
}

export interface AccessLogEntry {
  raw: string
  remote: string
  user: string
  method: string
  /** Path with query string, as requested. */
  path: string
  status: number
  userAgent: string
}

export interface Distribution {
  readonly host: string
  /** Known after the first start. */
  readonly port: number
  /** `host:port`, the form docker refs and UPSTREAM_CONNECT_TO use. */
  readonly address: string
  /** `https://host:port` or `http://host:port`. */
  readonly url: string
  readonly tls: boolean
  /** Every access-log line since the first start, in order. */
  readonly accessLog: AccessLogEntry[]
  /** Access-log entries with this method whose path matches (string: equals; RegExp: test). */
  requests: (method?: string, path?: string | RegExp) => AccessLogEntry[]
  /**
   * Waits (up to `timeoutMs`, default 5 s) until at least `count` entries match, then returns the
   * matches: the registry logs a request after answering it, so a client may finish first.
   */
  waitForRequests: (method: string | undefined, path: string | RegExp, count?: number, timeoutMs?: number) => Promise<AccessLogEntry[]>
  running: () => boolean
  /** (Re)starts on the same port and storage; resolves once /v2/ answers. */
  start: () => Promise<void>
  stop: () => Promise<void>
}

const COMBINED = /^(\S+) \S+ (\S+) \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) \S+ "(?:[^"\\]|\\.)*" "((?:[^"\\]|\\.)*)"/

export function parseAccessLine (raw: string): AccessLogEntry | undefined {
  const m = COMBINED.exec(raw)
  if (m === null) return undefined
  return { raw, remote: m[1] ?? '', user: m[2] ?? '', method: m[3] ?? '', path: m[4] ?? '', status: Number(m[5]), userAgent: m[6] ?? '' }
}

export async function startDistribution (scope: Scope, opts: DistributionOptions): Promise<Distribution> {
  const name = opts.name ?? 'registry'
  const tls = opts.tls ?? true
  const base = scope.path(name)
  const storageDir = opts.storageDir ?? `${base}/data`
  mkdirSync(base, { recursive: true })
  mkdirSync(storageDir, { recursive: true })
  let port = opts.port ?? 0
  const accessLog: AccessLogEntry[] = []

  const writeConfig = (): string => {
    const config: Record<string, unknown> = {
      version: '0.1',
      log: { level: 'info', formatter: 'text', accesslog: { disabled: false } },
      storage: { filesystem: { rootdirectory: storageDir }, delete: { enabled: true } },
      // A fixed secret so instances sharing storage (or a restarted one) can resume uploads.
      http: { addr: `${opts.host}:${port}`, secret: 'crossdock-e2e', ...(tls ? { tls: { certificate: FIXTURE.upstreamCert, key: FIXTURE.upstreamKey } } : {}) },
      health: { storagedriver: { enabled: false } },
    }
    if (opts.auth !== undefined) config.auth = { htpasswd: { realm: 'crossdock-e2e', path: `${base}/htpasswd` } }
    // distribution reads YAML, and JSON is YAML.
    writeFileSync(`${base}/config.yml`, JSON.stringify(config, null, 2))
    return `${base}/config.yml`
  }
  if (opts.auth !== undefined) {
    const line = await runOk('htpasswd', ['-Bbn', opts.auth.user, opts.auth.password])
    writeFileSync(`${base}/htpasswd`, line.trim() + '\n')
  }

  let daemon: Daemon | undefined
  const start = async (): Promise<void> => {
    if (daemon !== undefined && !daemon.hasExited()) throw new Error(`${name}: already running`)
    let listening: number | undefined
    const d = startDaemon(name, 'docker-registry', ['serve', writeConfig()], {
      logFile: `${base}/registry.log`,
      onStdoutLine: line => { const e = parseAccessLine(line); if (e !== undefined) accessLog.push(e) },
      onStderrLine: line => {
        const m = /msg="listening on [^"]*?:(\d+)/.exec(line)
        if (m !== null) listening = Number(m[1])
      },
    })
    daemon = d
    port = await waitFor(`${name} to listen`, () => listening, { timeoutMs: 15_000, abort: () => d.hasExited() ? `exited:\n${d.logTail()}` : undefined })
    await waitFor(`${name} /v2/ to answer`, async () => {
      const status = await getStatus(tls, opts.host, port, '/v2/')
      return status === 200 || status === 401
    }, { timeoutMs: 15_000, abort: () => d.hasExited() ? `exited:\n${d.logTail()}` : undefined })
  }
  const stop = async (): Promise<void> => { await daemon?.stop() }

  scope.defer(`stop ${name}`, stop)
  scope.attachLog(name, () => daemon?.logTail() ?? '')
  await start()

  const scheme = tls ? 'https' : 'http'
  const requests = (method?: string, path?: string | RegExp): AccessLogEntry[] => accessLog.filter(e =>
    (method === undefined || e.method === method) &&
    (path === undefined || (typeof path === 'string' ? e.path === path : path.test(e.path))))
  return {
    host: opts.host,
    get port () { return port },
    get address () { return `${opts.host}:${port}` },
    get url () { return `${scheme}://${opts.host}:${port}` },
    tls,
    accessLog,
    requests,
    waitForRequests: async (method, path, count = 1, timeoutMs = 5000) => {
      await waitFor(`${count} × ${method ?? '*'} ${String(path)} in the access log`, () => requests(method, path).length >= count, { timeoutMs, intervalMs: 20 }).catch(() => undefined)
      return requests(method, path)
    },
    running: () => daemon !== undefined && !daemon.hasExited(),
    start,
    stop,
  }
}

let testCaPem: string | undefined

/** Status of a GET, TLS verified against the fixture CA (no proxy: straight to the IP). */
async function getStatus (tls: boolean, host: string, port: number, path: string): Promise<number> {
  testCaPem ??= readFileSync(FIXTURE.testCa, 'utf8')
  return await new Promise((resolve, reject) => {
    const req = tls
      ? httpsRequest({ host, port, path, method: 'GET', ca: testCaPem, agent: false, timeout: 2000 })
      : httpRequest({ host, port, path, method: 'GET', agent: false, timeout: 2000 })
    req.once('response', res => { res.resume(); resolve(res.statusCode ?? 0) })
    req.once('timeout', () => req.destroy(new Error('timeout')))
    req.once('error', reject)
    req.end()
  })
}
