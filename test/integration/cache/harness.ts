/**
 * The proxy door with the pull-through cache plugged in, composed as app.ts composes it (config →
 * CA → leaf minter → dialer → upstream client → cache → pull-through → mirror router → proxy door),
 * so these tests run through a real CONNECT + TLS client until app.ts wires the cache itself.
 * Also: a streaming proxied client (the shared one buffers whole bodies).
 */
import http from 'node:http'
import tls from 'node:tls'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { AddressInfo } from 'node:net'
import { pino } from 'pino'
import type { Test } from 'tap'
import { loadConfig, type Config } from '../../../src/config/index.js'
import { loadOrCreateCa } from '../../../src/tls/ca.js'
import { LeafCertMinter } from '../../../src/tls/leaf-certs.js'
import { Dialer } from '../../../src/upstream/dialer.js'
import { UpstreamClient } from '../../../src/upstream/upstream-client.js'
import { MirrorRouter, type PullThroughHandler } from '../../../src/mirror/mirror-router.js'
import { createProxyServer } from '../../../src/proxy/proxy-server.js'
import { createDirector } from '../../../src/proxy/director.js'
import { formatAuthority } from '../../../src/proxy/connect-authority.js'
import { openCacheStore, type CacheStore } from '../../../src/cache/cache-store.js'
import type { FillHook } from '../../../src/cache/blob-fill.js'
import { createPullThrough } from '../../../src/mirror/pull-through.js'
import { FakeUpstream, TEST_CA_FILE } from '../../helpers/fake-upstream.js'
import { connectThrough } from '../../helpers/proxy-client.js'
import { readAll, type ReadResponse } from '../../helpers/read-all.js'

export interface Harness {
  config: Config
  cache: CacheStore
  proxyPort: number
  caPem: string
  dir: string
  logs: Array<Record<string, any>>
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
  const config = loadConfig({
    PROXY_PORT: '0', LISTEN_HOST: '127.0.0.1', CA_DIR: join(dir, 'ca'), CACHE_DIR: join(dir, 'cache'),
    UPSTREAM_CA_FILE: TEST_CA_FILE, LOG_LEVEL: 'debug', CACHE_MIN_FREE: '0', ...env,
  }, dir)
  const logs: Array<Record<string, any>> = []
  const log = pino({ level: 'debug' }, new Writable({
    write (chunk: Buffer, _e, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') logs.push(JSON.parse(line))
      cb()
    },
  }))
  const ca = await loadOrCreateCa({ caDir: config.caDir, log })
  const minter = new LeafCertMinter(ca)
  await minter.init()
  const dialer = new Dialer({ connectTo: config.upstreamConnectTo, disableIpv6: false, connectTimeoutMs: config.timeouts.connectMs })
  const upstream = new UpstreamClient({ dialer, verifySsl: true, upstreamCaFile: config.upstreamCaFile, connectTimeoutMs: config.timeouts.connectMs, readTimeoutMs: config.timeouts.readMs })
  const cache = await openCacheStore({ dir: config.cacheDir, maxSize: config.cache.maxSize, inactiveMs: config.cache.inactiveMs, minFree: config.cache.minFree, idleTimeoutMs: config.timeouts.readMs, log, fillHook: opts.fillHook })
  const pull = createPullThrough({ manifestTiers: config.cache, log, cache, upstream })
  let handled = 0
  const waiters: Array<() => void> = []
  const counting: PullThroughHandler = {
    handle: async (req, res, ctx) => {
      handled++
      for (const w of waiters.splice(0)) w()
      await pull.handle(req, res, ctx)
    },
  }
  const mirror = new MirrorRouter(upstream, counting)
  const intercepted = new Set(config.registries)
  const proxy = createProxyServer({
    log,
    dialer,
    secureContextFor: async host => await minter.secureContextFor(host),
    shouldIntercept: a => intercepted.has(a.host),
    allowedPorts: new Set(config.connectAllowedPorts),
    clientHeaderTimeoutMs: config.timeouts.clientHeaderMs,
    keepAliveTimeoutMs: config.timeouts.keepAliveMs,
    onIntercepted: async (req, res, target) => {
      const host = target.port === 443 ? target.host : formatAuthority(target)
      await mirror.handle(req, res, { host, door: 'proxy', path: req.url ?? '/', allowPush: false })
    },
    director: createDirector({ caCertPem: () => ca.certPem, proxyPort: 0, extraRoutes: {} }),
  })
  await new Promise<void>(resolve => proxy.server.listen(0, '127.0.0.1', resolve))
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    await proxy.close()
    await upstream.close()
    await cache.close()
  }
  t.teardown(stop)
  return {
    config,
    cache,
    proxyPort: (proxy.server.address() as AddressInfo).port,
    caPem: ca.certPem,
    dir,
    logs,
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
