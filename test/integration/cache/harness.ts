/**
 * The real app (createApp, through startApp) on loopback with its cache reached through the app's
 * test-only options (AppTestOptions): the cache and prefetch queue it built, a fill hook, a count of
 * requests reaching the pull-through. Tests run through a real CONNECT + TLS client on the proxy door.
 * Also: a streaming proxied client (the shared one buffers whole bodies).
 */
import http from 'node:http'
import tls from 'node:tls'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import type { Config } from '../../../src/config/index.js'
import type { CacheStore } from '../../../src/cache/cache-store.js'
import type { FillHook } from '../../../src/cache/blob-fill.js'
import type { Prefetcher } from '../../../src/mirror/prefetch.js'
import { startApp } from '../../helpers/start-app.js'
import { FakeUpstream } from '../../helpers/fake-upstream.js'
import { connectThrough } from '../../helpers/proxy-client.js'
import { readAll, type ReadResponse } from '../../helpers/read-all.js'

export interface Harness {
  config: Config
  cache: CacheStore
  proxyPort: number
  caPem: string
  dir: string
  logs: Array<Record<string, any>>
  /** The app's prefetch queue; on only when PREFETCH_CONCURRENCY is set in `env` (startApp: 0). */
  prefetch: Prefetcher
  /** Requests that reached the pull-through handler so far. */
  handled: () => number
  /** Resolves once `n` requests reached the pull-through handler. */
  handledAtLeast: (n: number) => Promise<void>
  stop: () => Promise<void>
}

export interface HarnessOptions {
  dir?: string
  /** Awaited at each step of every blob fill (the interleaving tests pause fills with it). */
  fillHook?: FillHook
}

export async function startHarness (t: Test, env: Record<string, string>, opts: HarnessOptions = {}): Promise<Harness> {
  const dir = opts.dir ?? await mkdtemp(join(tmpdir(), 'crossdock-cache-it-'))
  if (opts.dir === undefined) t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  let handled = 0
  const waiters: Array<() => void> = []
  let parts: { cache: CacheStore, prefetch: Prefetcher } | undefined
  const started = await startApp({ CACHE_MIN_FREE: '0', ...env }, {
    dir,
    test: {
      fillHook: opts.fillHook,
      onPullThrough: () => { handled++; for (const w of waiters.splice(0)) w() },
      expose: p => { parts = p },
    },
  })
  if (parts === undefined) throw new Error('createApp did not expose its cache')
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    await started.stop()
  }
  t.teardown(stop)
  return {
    config: started.config,
    cache: parts.cache,
    prefetch: parts.prefetch,
    proxyPort: started.proxyPort,
    caPem: started.caPem,
    dir,
    logs: started.logs,
    handled: () => handled,
    handledAtLeast: async n => { while (handled < n) await new Promise<void>(resolve => waiters.push(resolve)) },
    stop,
  }
}

export interface Streamed {
  status: number
  headers: http.IncomingHttpHeaders
  res: http.IncomingMessage
  socket: tls.TLSSocket
}

/** A request through the proxy door that resolves at the response headers, body unread. */
export async function streamThrough (h: Pick<Harness, 'proxyPort' | 'caPem'>, host: string, path: string, opts: { method?: string, headers?: Record<string, string> } = {}): Promise<Streamed> {
  const tunnel = await connectThrough(h.proxyPort, `${host}:443`)
  if (tunnel.status !== 200) throw new Error(`CONNECT answered ${tunnel.status}`)
  const socket = tls.connect({ socket: tunnel.socket, servername: host, ca: h.caPem })
  await new Promise<void>((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject) })
  return await new Promise((resolve, reject) => {
    const req = http.request({ createConnection: () => socket, host, method: opts.method ?? 'GET', path, headers: { host, ...opts.headers } }, res => {
      resolve({ status: res.statusCode ?? 0, headers: res.headers, res, socket })
    })
    req.on('error', reject)
    req.end()
  })
}

export type Fetched = ReadResponse

export async function fetchThrough (h: Pick<Harness, 'proxyPort' | 'caPem'>, host: string, path: string, opts: { method?: string, headers?: Record<string, string> } = {}): Promise<Fetched> {
  const s = await streamThrough(h, host, path, opts)
  return await readBody(s)
}

export async function readBody (s: Streamed): Promise<Fetched> {
  const read = await readAll(s.res)
  s.socket.destroy()
  return read
}

/** A fake upstream (Docker Hub's host, or `hosts`) and the harness pointed at it; both stop at the test's teardown. */
export async function startWithUpstream (t: Test, env: Record<string, string> = {}, opts: HarnessOptions & { hosts?: string[] } = {}): Promise<{ up: FakeUpstream, h: Harness }> {
  const up = new FakeUpstream()
  await up.start()
  t.teardown(async () => { await up.stop() })
  const h = await startHarness(t, { UPSTREAM_CONNECT_TO: up.connectTo(opts.hosts ?? ['registry-1.docker.io']), ...env }, opts)
  return { up, h }
}

/**
 * One client on one keep-alive connection through the proxy door, as containerd's Go client is:
 * requests go one after another on the same TLS socket, and a connection the server closes is not
 * silently replaced (curl would retry on a new one and hide the bug): the next request fails.
 */
export interface KeepAliveClient {
  get: (path: string, headers?: Record<string, string>) => Promise<Fetched>
  /** False once the server closed the connection. */
  readonly open: boolean
  close: () => void
}

export async function keepAliveClient (h: Pick<Harness, 'proxyPort' | 'caPem'>, host: string): Promise<KeepAliveClient> {
  const tunnel = await connectThrough(h.proxyPort, `${host}:443`)
  if (tunnel.status !== 200) throw new Error(`CONNECT answered ${tunnel.status}`)
  const socket = tls.connect({ socket: tunnel.socket, servername: host, ca: h.caPem })
  await new Promise<void>((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject) })
  let open = true
  socket.once('close', () => { open = false })
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  let given = false
  // The agent asks for a socket once; a second ask means the first one was closed under us.
  ;(agent as unknown as { createConnection: () => tls.TLSSocket }).createConnection = () => {
    if (given) throw new Error('the server closed the keep-alive connection')
    given = true
    return socket
  }
  return {
    get: async (path, headers = {}) => await new Promise<Fetched>((resolve, reject) => {
      const req = http.request({ agent, host, method: 'GET', path, headers: { host, ...headers } }, res => { readAll(res).then(resolve, reject) })
      req.on('error', reject)
      req.end()
    }),
    get open () { return open },
    close: () => { agent.destroy(); socket.destroy() },
  }
}
