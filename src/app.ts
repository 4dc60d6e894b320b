/**
 * The composition root: config → logger → CA → leaf minter → stores → upstream client → mirror →
 * doors → servers. Composition only: what a request means is decided in doors/ (proxy-door.ts,
 * registry-door.ts). `start()` listens on both doors; `stop()` closes them. Tests start the same
 * app on port 0.
 */
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import type http from 'node:http'
import type { Config } from './config/index.js'
import type { Logger } from './log.js'
import { ConfigError } from './errors.js'
import { loadOrCreateCa } from './tls/ca.js'
import { LeafCertMinter } from './tls/leaf-certs.js'
import { Dialer } from './upstream/dialer.js'
import { DestinationPolicy } from './upstream/destination-policy.js'
import { UpstreamClient } from './upstream/upstream-client.js'
import { UpstreamCredentials } from './upstream/credentials.js'
import { CredentialHelpers } from './upstream/credential-helper.js'
import { BasicInjectingUpstream } from './upstream/basic-injection.js'
import { AuthenticatingUpstream } from './upstream/token-auth.js'
import { UpstreamAccessPolicy } from './mirror/access-policy.js'
import { MirrorRouter, type PullThroughHandler } from './mirror/mirror-router.js'
import { PullPolicy } from './mirror/pull-policy.js'
import { createDirector } from './proxy/director.js'
import { createProxyServer, type ProxyServer } from './proxy/proxy-server.js'
import { openCacheStore, type CacheStore } from './cache/cache-store.js'
import type { FillHook } from './cache/blob-fill.js'
import type { FollowOptions } from './cache/s3/bucket-fill-follower.js'
import type { BucketFillHook } from './cache/s3/bucket-fill-writer.js'
import type { S3Bucket } from './objects/s3-bucket.js'
import { LocalFillLock, type FillLock } from './cluster/fill-lock.js'
import { PersistentSet } from './mirror/persistent-set.js'
import { createPullThrough } from './mirror/pull-through.js'
import { Prefetcher } from './mirror/prefetch.js'
import { SegmentSlots, SEGMENT_SLOTS } from './upstream/segment-slots.js'
import { createHostedRegistry } from './registry/hosted-registry.js'
import { createRegistryServer } from './doors/registry-server.js'
import { createRegistryDoor } from './doors/registry-door.js'
import { createUpstreamMountSource } from './doors/upstream-mount.js'
import { createProxyDoor } from './doors/proxy-door.js'
import { containerdSetupRoute } from './proxy/setup-scripts.js'
import { createOwnDoorCheck } from './proxy/own-door.js'
import { loadClientAuth } from './auth/client-auth.js'
import { openRegistryStorage } from './registry/storage/open-storage.js'
import { createMetrics, countHostedRequests } from './observability/metrics.js'
import type { RequestLogLine } from './observability/request-log.js'
import { createHealth } from './observability/health.js'
import { createOpsRoutes } from './observability/ops-routes.js'
import { TrafficStats } from './observability/traffic-stats.js'
import { createStatus } from './observability/status.js'
import { text } from './proxy/director.js'
import { VERSION } from './version.js'
import { createTransferRoutes } from './warm/transfer-routes.js'
import { createReplicaId } from './cluster/replica-id.js'

export interface App {
  start: () => Promise<void>
  /**
   * Stops accepting on both doors; requests and cache fills in flight may finish for `timeoutMs`
   * (default SHUTDOWN_TIMEOUT), then whatever is left is cut.
   */
  stop: (opts?: { timeoutMs?: number }) => Promise<void>
  /** `host:port` of each door once started. */
  addresses: () => { proxy: string, registry: string }
}

/**
 * Test-only parts of the composition (integration tests start the real app and reach in here; the
 * CLI never sets them). Nothing here changes what the app does, only what a test can see or pause.
 */
export interface AppTestOptions {
  /** Awaited at each step of every blob fill (the fill interleaving tests pause fills with it). */
  fillHook?: FillHook
  /** Called as each request reaches a pull-through handler (either door), before it is handled. */
  onPullThrough?: () => void
  /** STORAGE=s3: elects who fills a blob instead of LocalFillLock (tests script leaders and followers). */
  fillLock?: FillLock
  /** STORAGE=s3: how long a follower waits on a silent leader (bucket-fill-follower.ts). */
  follow?: Partial<FollowOptions>
  /** STORAGE=s3: awaited at each step of every blob's copy into the bucket. */
  bucketFillHook?: BucketFillHook
  /** STORAGE=s3: the bucket client instead of a new one (tests watch its calls); checked, shared and destroyed as the app's own. */
  bucket?: S3Bucket
  /** Hands over the cache and the prefetch queue once built. */
  expose?: (parts: { cache: CacheStore, prefetch: Prefetcher }) => void
}

export async function createApp ({ config, log, test }: { config: Config, log: Logger, test?: AppTestOptions }): Promise<App> {
  const ca = await loadOrCreateCa({ caDir: config.caDir, caCrtFile: config.caCrtFile, caKeyFile: config.caKeyFile, caKeyPassphrase: config.caKeyPassphrase, log })
  const minter = new LeafCertMinter(ca)
  await minter.init()

  const metrics = createMetrics({ registries: config.registries, version: VERSION })
  // The status page's numbers (metrics hold Prometheus's; this holds the last hour and top names).
  const traffic = new TrafficStats({ registries: config.registries })
  const observeRequest = Object.assign((line: RequestLogLine) => { metrics.observeRequest(line); traffic.record(line) }, { started: metrics.observeRequest.started })
  const policyLog = log.child({ module: 'destination-policy' })
  // Everything dialled for a client: tunnels, redirect hops, token realms (SECURITY.md).
  const policy = new DestinationPolicy({
    allow: config.tunnelAllow,
    deny: config.tunnelDeny,
    trustedHosts: config.registries,
    ownSockets: () => [proxy.server.address(), registry.server.address()]
      .filter((a): a is AddressInfo => a !== null && typeof a === 'object')
      .map(a => ({ address: a.address, port: a.port })),
    onRefused: r => {
      policyLog.warn({ reason: r.reason, destination: r.destination, purpose: r.purpose, status: 403 }, 'destination refused')
      metrics.observeRefusal(r)
    },
  })
  const dialer = new Dialer({
    connectTo: config.upstreamConnectTo,
    upstreamProxy: config.upstreamProxy,
    disableIpv6: config.disableIpv6,
    connectTimeoutMs: config.timeouts.connectMs,
    policy,
  })
  const upstream = new UpstreamClient({
    dialer,
    verifySsl: config.verifySsl,
    upstreamCaFile: config.upstreamCaFile,
    connectTimeoutMs: config.timeouts.connectMs,
    readTimeoutMs: config.timeouts.readMs,
    http2: config.upstreamHttp2,
    onResponse: r => { metrics.observeUpstream(r); traffic.upstream(r); prefetch.noteUpstream(r) },
  })
  const cacheOptions = {
    dir: config.cacheDir,
    maxSize: config.cache.maxSize,
    inactiveMs: config.cache.inactiveMs,
    minFree: config.cache.minFree,
    idleTimeoutMs: config.timeouts.readMs,
    log: log.child({ module: 'cache' }),
    fillHook: test?.fillHook,
  }
  // STORAGE=s3: one bucket client, so one connection pool, for the cache and the hosted storage;
  // checked before either opens (a wrong bucket or key is one line before anything listens) and
  // destroyed by stop() after both closed. Imported only then: the AWS SDK costs ~23 MiB of RSS.
  const bucket = config.storage.kind === 's3'
    ? await (await import('./objects/s3-bucket.js')).openS3Bucket(config.storage, {}, test?.bucket)
    : undefined
  // Who fills a blob cluster-wide (design §10; REDIS_URL requires STORAGE=s3): a Redis lock with REDIS_URL, otherwise
  // (and whenever Redis is unreachable) every replica leads.
  const replicaId = createReplicaId()
  // ioredis is imported only with REDIS_URL, as the AWS SDK only with STORAGE=s3: no start-up cost otherwise.
  const fillLock: FillLock = test?.fillLock ?? (config.cluster.redisUrl !== undefined
    ? new (await import('./cluster/redis-fill-lock.js')).RedisFillLock({ url: config.cluster.redisUrl, replicaId, ttlMs: config.cluster.lockTtlMs, log: log.child({ module: 'cluster' }), observer: metrics.cluster })
    : new LocalFillLock())
  const coordination = (): string => config.cluster.redisUrl === undefined
    ? 'off: no REDIS_URL, this replica fills on its own'
    : fillLock.coordinated() ? 'redis: one fill per blob across replicas' : 'redis unreachable: this replica fills on its own until it returns'
  // STORAGE=s3: the cache's shared tier is the bucket; CACHE_DIR is this replica's bounded local tier.
  const cache = config.storage.kind === 's3'
    ? await (await import('./cache/s3/open-bucket-cache.js')).openBucketCache({ ...cacheOptions, maxSize: config.cache.localMaxSize, s3: config.storage, bucket, fillLock, follow: test?.follow, writerHook: test?.bucketFillHook, cluster: { replicaId, maxSize: config.cache.maxSize } })
    : await openCacheStore(cacheOptions)
  const helpers = new CredentialHelpers({ ...config.credentialHelpers, log })
  const credentials = new UpstreamCredentials(config.authRegistries, helpers)
  if (config.authRegistries.length > 0) log.info({ hosts: credentials.describe().map(c => c.repository !== undefined ? `${c.host}/${c.repository}` : c.host) }, 'upstream credentials configured (AUTH_REGISTRIES)')
  if (helpers.size > 0) log.info({ helpers: config.credentialHelpers.entries }, 'upstream credential helpers configured (CREDENTIAL_HELPERS)')
  // Proxy door: clients run the token dance through us; Basic is added only when they sent no
  // Authorization. Registry door: crossdock runs the dance itself (its clients cannot).
  const proxyUpstream = new BasicInjectingUpstream(upstream, credentials)
  const doorUpstream = new AuthenticatingUpstream({ upstream, credentials, log })
  // Beside the cache, kept across restarts (mirror/persistent-set.ts): what `crossdock import --into
  // cache` vouched for; what the outage fallback needs (repositories seen public, digests seen restricted).
  const trusted = await PersistentSet.open(join(config.cacheDir, 'imported-repositories'))
  const everPublic = await PersistentSet.open(join(config.cacheDir, 'public-repositories'))
  const everRestricted = await PersistentSet.open(join(config.cacheDir, 'restricted-digests'))
  const access = new UpstreamAccessPolicy({ credentials, upstream, anonymous: new AuthenticatingUpstream({ upstream, credentials: UpstreamCredentials.none(), log }), log, trusted, everPublic, everRestricted })
  // One prefetch queue for both doors (one PREFETCH_CONCURRENCY); each door fetches as its clients do.
  const prefetch = new Prefetcher({ cache: cache.blobs, log, concurrency: config.prefetch.concurrency, adaptive: config.prefetch.adaptive, imageBudget: config.prefetch.imageBudget })
  const pulls = new PullPolicy({ allow: config.pullAllow, deny: config.pullDeny, onDenied: r => { metrics.observePullDenied(r) } })
  // One cache (and its single-flight) behind both doors; each door's mirror has its own upstream client.
  const observed = (pull: PullThroughHandler): PullThroughHandler => test?.onPullThrough === undefined
    ? pull
    : { handle: async (req, res, ctx) => { test.onPullThrough?.(); await pull.handle(req, res, ctx) } }
  // Segmented downloads of both doors (prefetch included) share one budget of extra connections.
  const segments = config.segments.perBlob > 1 ? { segments: config.segments.perBlob, minSize: config.segments.minSize, rate: config.segments.rate, slots: new SegmentSlots(SEGMENT_SLOTS), onDecision: metrics.observeSegmentDecision } : undefined
  const mirror = new MirrorRouter(proxyUpstream, observed(createPullThrough({ manifestTiers: config.cache, log, cache, upstream: proxyUpstream, access, prefetch, segments })), pulls)
  const doorMirror = new MirrorRouter(doorUpstream, observed(createPullThrough({ manifestTiers: config.cache, log, cache, upstream: doorUpstream, access, prefetch, segments })), pulls)
  test?.expose?.({ cache, prefetch })

  const clientAuth = await loadClientAuth({
    htpasswdFile: config.htpasswdFile,
    anonymousPull: config.authAnonymousPull,
    log,
    // Anonymous CONNECTs (AUTH_ANONYMOUS_PULL) only to hosts we terminate, where each request is
    // checked again; never raw tunnels, or the proxy would be an open relay.
    anonymousConnect: a => proxyDoor.intercepts(a),
  })
  // Warm-up pulls through the registry door as a client with this process's own credential.
  const self = createTransferRoutes({ config, log, cache, registryAddress: () => registry.server.address() as AddressInfo | null, authorize: clientAuth?.authorizeAccess, trust: async (host, repository) => { await access.trust(host, repository) } })
  // The one handle on the hosted storage (STORAGE: directory or bucket): the registry, gc metrics
  // and the status page share it.
  const hostedStorage = await openRegistryStorage(config.storage, config.registryStorageDir, {}, bucket)
  // /metrics, /healthz and /readyz on both doors.
  metrics.collectFrom({
    cache,
    prefetch,
    ready: async () => (await health.readiness()).ready,
    minter,
    hostedStorageBytes: async () => { let n = 0; for await (const b of hostedStorage.blobs.list()) n += b.size; return n },
  })
  let stopping = false
  const health = createHealth({ caNotAfter: () => ca.notAfter, cacheDir: config.cacheDir, registryDir: hostedStorage.kind === 'fs' ? config.registryStorageDir : undefined, storage: hostedStorage.check, minFree: config.cache.minFree, stopping: () => stopping, coordination })
  const ops = createOpsRoutes({ metrics, health })
  const status = createStatus({
    version: VERSION,
    addresses: () => ({ proxy: proxyAddress, registry: registryAddress }),
    proxyPort: () => (proxy.server.address() as AddressInfo | null)?.port ?? config.proxyPort,
    registries: config.registries,
    hostedHostnames: config.hostedHostnames,
    cache: { stats: () => cache.stats(), fillsInFlight: () => cache.blobs.fillsInFlight() },
    traffic,
    cluster: () => ({ replica: replicaId, mode: config.cluster.redisUrl === undefined ? 'local' : 'redis', coordinated: fillLock.coordinated() }),
    authorized: clientAuth === undefined ? undefined : async req => (await clientAuth.checkBasic(req.headers.authorization, req.socket.remoteAddress)).ok,
  })
  const registryRoot = status.page(async (_req, res) => { text(res, 200, `crossdock ${VERSION}: the registry door is working (hosted names under /v2/, upstreams under /v2/<registry>/)\n`) })
  // Answered on both doors; the registry port is only known once it listens (REGISTRY_PORT=0).
  const containerdSetup = containerdSetupRoute({
    registryPort: () => (registry.server.address() as AddressInfo | null)?.port ?? config.registryPort,
    scheme: config.registryTlsCert !== undefined ? 'https' : 'http',
  })
  const hosted = countHostedRequests(await createHostedRegistry({
    storage: hostedStorage,
    uploadMaxAgeMs: config.uploadMaxAgeMs,
    log,
    authorize: clientAuth?.authorizeAccess,
    mountSource: createUpstreamMountSource({ registries: config.registries, cache: cache.blobs, access, log }),
  }), metrics)
  // Upstream namespaces on the registry port (`/v2/docker.io/…`, `?ns=`) share the proxy door's
  // cache and access policy, over the token-dance client (its clients cannot answer challenges).
  const registryDoor = createRegistryDoor({
    registries: config.registries,
    hostedHostnames: config.hostedHostnames,
    hosted,
    mirror: doorMirror,
    authorize: self.wrap(clientAuth?.authorizeAccess),
    ownRoutes: self.route,
    extraRoutes: { '/setup/containerd': containerdSetup, ...ops, '/': registryRoot, '/status.json': status.json },
    log,
  })
  const registry = createRegistryServer({ config, log, handle: registryDoor.handle, observe: observeRequest })
  const proxyDoor = createProxyDoor({ registries: config.registries, hostedHostnames: config.hostedHostnames, allowPush: config.allowPush, hosted, mirror })

  // Absolute-URI requests and CONNECTs on the proxy door that name our registry door are served by it.
  const isOwn = createOwnDoorCheck({ registryPort: () => (registry.server.address() as AddressInfo | null)?.port ?? config.registryPort, listenHost: config.listenHost })
  const proxyLog = log.child({ module: 'proxy' })
  const proxy: ProxyServer = createProxyServer({
    log: proxyLog,
    dialer,
    secureContextFor: async host => await minter.secureContextFor(host),
    shouldIntercept: proxyDoor.shouldIntercept,
    allowedPorts: new Set(config.connectAllowedPorts),
    authorizeConnect: clientAuth?.authorizeConnect,
    clientHeaderTimeoutMs: config.timeouts.clientHeaderMs,
    keepAliveTimeoutMs: config.timeouts.keepAliveMs,
    tunnelLimits: {
      connectTimeoutMs: config.timeouts.tunnelConnectMs,
      readTimeoutMs: config.timeouts.tunnelReadMs,
      sendTimeoutMs: config.timeouts.tunnelSendMs,
      maxTunnels: config.maxTunnels,
    },
    observeRequest,
    observeTunnel: metrics.tunnels,
    registryDoor: { isOwn, accept: socket => { registry.server.emit('connection', socket) } },
    onIntercepted: proxyDoor.handle,
    director: createDirector({
      caCertPem: () => ca.certPem,
      proxyPort: config.proxyPort,
      extraRoutes: { '/setup/containerd': containerdSetup, ...ops, '/status.json': status.json },
      statusPage: status.page,
      registryDoor: { isOwn, handle: registry.handle },
    }),
  })

  let proxyAddress = ''
  let registryAddress = ''
  return {
    start: async () => {
      await listen(proxy.server, config.proxyPort, config.listenHost).catch(err => { throw listenProblem('PROXY_PORT', config.proxyPort, config.listenHost, err) })
      proxyAddress = formatAddress(proxy.server.address() as AddressInfo)
      registryAddress = formatAddress(await registry.listen().catch(err => { throw listenProblem('REGISTRY_PORT', config.registryPort, config.listenHost, err) }))
      self.start()
    },
    stop: async ({ timeoutMs = config.timeouts.shutdownMs } = {}) => {
      stopping = true
      prefetch.stop()
      const deadline = Date.now() + timeoutMs
      const cutRegistry = setTimeout(() => registry.server.closeAllConnections(), timeoutMs)
      // The doors stop listening in this tick; warm-up downloads are cut while they drain.
      const doorsClosed = Promise.all([proxy.close({ timeoutMs }), registry.close().finally(() => clearTimeout(cutRegistry))])
      await self.stop()
      await doorsClosed
      // Fills whose clients went away keep going: finished, the next pull finds the blob cached.
      await settlesWithin(cache.blobs.fillsSettled(), deadline - Date.now())
      await hosted.close()
      hostedStorage.close()
      await cache.close()
      // Last: the cache's close flushed its read times into the bucket.
      bucket?.destroy()
      await fillLock.close()
      if (!await settlesWithin(upstream.close(), deadline - Date.now())) await upstream.destroy()
    },
    addresses: () => ({ proxy: proxyAddress, registry: registryAddress }),
  }
}

async function listen (server: http.Server, port: number, host: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.removeListener('error', reject); resolve() })
  })
}

/** A listen failure as the one line an operator needs: which variable, which address, why. */
function listenProblem (variable: string, port: number, host: string, err: unknown): ConfigError {
  const code = (err as NodeJS.ErrnoException).code ?? ''
  const where = `${variable}=${port}: cannot listen on ${host.includes(':') ? `[${host}]` : host}:${port}`
  const why: Record<string, string> = {
    EADDRINUSE: 'the port is already in use; stop what uses it or choose another port',
    EADDRNOTAVAIL: 'LISTEN_HOST is not an address of this host',
    EACCES: 'ports below 1024 need root or CAP_NET_BIND_SERVICE; choose a port above 1023',
  }
  return new ConfigError(`${where}: ${why[code] ?? (err as Error).message} (${code || 'error'})`)
}

/** Whether `p` settled within `ms` (it keeps running either way). */
async function settlesWithin (p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<false>(resolve => { timer = setTimeout(() => resolve(false), Math.max(0, ms)) })
  try {
    return await Promise.race([p.then(() => true, () => true), late])
  } finally {
    clearTimeout(timer)
  }
}

function formatAddress (a: AddressInfo): string {
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`
}
