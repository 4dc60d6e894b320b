/**
 * Prometheus metrics (`/metrics` on both doors). Each app has its own prom-client Registry, not the
 * global one, so a test can start several apps in one process.
 *
 * Instrumentation stays outside the request paths; three feeds:
 *
 *   request-log.ts ──observeRequest(line)──► requests (count, duration, in flight), cache outcomes
 *                                            and pull-through bytes by registry
 *   tunnel.ts ──────tunnels.…──────────────► tunnels by outcome, bytes by direction, open tunnels
 *   UpstreamClient ──observeUpstream(r)────► upstream requests, latency, Docker Hub rate limits
 *   hosted wrapper ──observeHosted(…)──────► hosted pushes and pulls
 *   destination policy ─observeRefusal(r)──► destinations refused, by reason and purpose
 *   pull policy ────observePullDenied(r)───► pulls refused by PULL_ALLOW/PULL_DENY, by registry and rule
 *   SegmentedBody ──observeSegmentDecision─► segmented or single, per large blob (UPSTREAM_SEGMENT_RATE)
 *   RedisFillLock ──cluster.…──────────────► fill elections, local fallbacks, leases lost, Redis up
 *   scrape time ────collect()──────────────► cache size/entries/evictions (cache.stats()),
 *                                            certificates minted, hosted storage bytes, tunnels open
 *
 * Labels are bounded: door, kind, status, method (the registry API's six, else "other"), cache_status,
 * registry (configured registries, else "other"), refusal reason and purpose, and the upstream host
 * (configured registries, their token realms and redirect targets of those). Never a repository,
 * a path, a user, a token, or a refused destination (clients choose those).
 * Node's process metrics keep their standard names (`process_*`, `nodejs_*`) so stock dashboards work.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { RequestLogFields, RequestLogLine, RequestObserver } from './request-log.js'
import { registerClusterMetrics, type ClusterObserver } from './cluster-metrics.js'

export type RequestKind = 'blob' | 'manifest' | 'tag' | 'upload' | 'other'

/** What an upstream answered (UpstreamClient's onResponse hook); status 0 when nothing came back. */
export interface UpstreamObservation {
  host: string
  status: number
  ms: number
  headers: Record<string, string | string[] | undefined>
}

/** Read at scrape time; any of them may be absent (the CLI, a test without a cache). */
export interface MetricSources {
  cache?: { stats: () => { entries: number, usedBytes: number, maxSize: number, inflight: number, evictions: number, expirations: number, fillsFailed?: number } }
  /** /readyz's verdict, as a 1/0 gauge for alerting. */
  ready?: () => Promise<boolean>
  minter?: { readonly minted: number }
  /** Bytes of hosted blob content; called at most once per `storageEveryMs`. */
  hostedStorageBytes?: () => Promise<number>
  /** The prefetch queue's totals (mirror/prefetch.ts). */
  prefetch?: { stats: () => { started: number, joined: number, skipped: Record<string, number>, queued: number } }
}

/** What tunnel.ts reports of raw CONNECT tunnels. */
export interface TunnelObserver {
  /** A tunnel ended before it opened: the far end refused, failed or timed out. */
  failed: (outcome: 'failed' | 'timeout') => void
  opened: () => void
  bytes: (direction: 'up' | 'down', n: number) => void
  closed: () => void
}

export interface Metrics {
  readonly registry: Registry
  observeRequest: RequestObserver
  observeUpstream: (r: UpstreamObservation) => void
  observeHosted: (r: { method: string, path: string, status: number }) => void
  observeRefusal: (r: { reason: string, purpose: string }) => void
  /** A pull PULL_ALLOW/PULL_DENY refused (pull-policy.ts): by registry and the rule, never the repository. */
  observePullDenied: (r: { host: string, rule: string }) => void
  /** A large blob's download decided how its rest comes (upstream/segment-rule.ts). */
  observeSegmentDecision: (decision: 'segmented' | 'single') => void
  tunnels: TunnelObserver
  /** Fill elections across replicas (cluster-metrics.ts), for the RedisFillLock. */
  cluster: ClusterObserver
  /** Plugs in what scrape-time gauges read (called once the cache, minter… exist). */
  collectFrom: (sources: MetricSources) => void
  /** The exposition text and its content type. */
  render: () => Promise<{ contentType: string, body: string }>
}

export interface MetricsOptions {
  /** Node's process metrics (collectDefaultMetrics); default true. */
  processMetrics?: boolean
  /** How long a hosted storage size stays fresh (a directory walk); default 60 s. */
  storageEveryMs?: number
  /** config.registries: the values the `registry` label may take (anything else is "other"). */
  registries?: readonly string[]
  /** For crossdock_build_info. */
  version?: string
}

// Upstream latency: from a token fetch on loopback (ms) to a slow registry's first byte (s).
const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
// Whole requests: a cached manifest in ms, a multi-GB layer on a slow client in minutes.
const REQUEST_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]
const METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE'])
// What the cache counts as served from it: no upstream transfer of their own.
const FROM_CACHE = new Set(['HIT', 'JOINED', 'STALE'])
const CACHE_STATUSES = new Set(['HIT', 'MISS', 'JOINED', 'STALE', 'BYPASS'])
const WRITES = new Set(['PUT', 'POST', 'PATCH', 'DELETE'])
// Not anchored at the start: a door may mount the API below a prefix (`/v2/docker.io/…` is still `/v2/…/blobs/…`).
const BLOB_PATH = /\/v2\/.+\/blobs\/([^/?]+)(\?.*)?$/
const UPLOAD_PATH = /\/v2\/.+\/blobs\/uploads(\/|\?|$)/
const MANIFEST_REFERENCE = /\/v2\/.+\/manifests\/([^/?]+)(\?.*)?$/

export function createMetrics (opts: MetricsOptions = {}): Metrics {
  const registry = new Registry()
  let sources: MetricSources = {}
  const registries = new Set((opts.registries ?? []).map(h => h.toLowerCase()))
  const registryOf = (host: string | undefined): string => host !== undefined && registries.has(host.toLowerCase()) ? host.toLowerCase() : 'other'

  new Gauge({
    name: 'crossdock_build_info',
    help: 'Always 1; the labels say which crossdock (version) runs on which Node.js (node).',
    labelNames: ['version', 'node'] as const,
    registers: [registry],
  }).set({ version: opts.version ?? 'unknown', node: process.version }, 1)

  const requests = new Counter({
    name: 'crossdock_requests_total',
    help: 'HTTP requests answered, by door (proxy, registry, director), kind (blob, manifest, tag, upload, other) and status code.',
    labelNames: ['door', 'kind', 'status'] as const,
    registers: [registry],
  })
  const duration = new Histogram({
    name: 'crossdock_http_request_duration_seconds',
    help: 'Time from a request\'s arrival to the end of its response (body included), by door, method and kind (blob, manifest, tag, upload, other).',
    labelNames: ['door', 'method', 'kind'] as const,
    buckets: REQUEST_BUCKETS,
    registers: [registry],
  })
  const inFlight = new Gauge({
    name: 'crossdock_http_requests_in_flight',
    help: 'Requests being answered right now, by door.',
    labelNames: ['door'] as const,
    registers: [registry],
  })
  const cacheRequests = new Counter({
    name: 'crossdock_cache_requests_total',
    help: 'Pull-through cache outcomes by registry (configured upstreams, else "other"), kind (blob, manifest, tag) and cache_status (HIT, MISS, JOINED, STALE, BYPASS).',
    labelNames: ['registry', 'kind', 'cache_status'] as const,
    registers: [registry],
  })
  const pullThroughBytes = new Counter({
    name: 'crossdock_pull_through_bytes_total',
    help: 'Body bytes the pull-through cache sent to clients, by registry, kind and source: cache (HIT, JOINED, STALE) or upstream (MISS, BYPASS).',
    labelNames: ['registry', 'kind', 'source'] as const,
    registers: [registry],
  })
  const abandoned = new Counter({
    name: 'crossdock_responses_abandoned_total',
    help: 'Responses crossdock aborted mid-body while the client was still reading (a fill that failed, an upstream that broke off), by door, kind and reason (an error code).',
    labelNames: ['door', 'kind', 'reason'] as const,
    registers: [registry],
  })
  const upstreamRequests = new Counter({
    name: 'crossdock_upstream_requests_total',
    help: 'Requests crossdock made to upstreams, by upstream host and final status (after redirects); status "error" when no response came.',
    labelNames: ['host', 'status'] as const,
    registers: [registry],
  })
  const upstreamLatency = new Histogram({
    name: 'crossdock_upstream_duration_seconds',
    help: 'Time until an upstream\'s response headers arrived (redirects included), by upstream host and status.',
    labelNames: ['host', 'status'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  })
  const rateLimit = new Gauge({
    name: 'crossdock_upstream_ratelimit_limit',
    help: 'Pull rate limit the upstream announced (Docker Hub\'s ratelimit-limit header), last value seen, by upstream host.',
    labelNames: ['host'] as const,
    registers: [registry],
  })
  const rateRemaining = new Gauge({
    name: 'crossdock_upstream_ratelimit_remaining',
    help: 'Pulls left in the upstream\'s rate-limit window (Docker Hub\'s ratelimit-remaining header), last value seen, by upstream host.',
    labelNames: ['host'] as const,
    registers: [registry],
  })
  const tunnels = new Counter({
    name: 'crossdock_tunnels_total',
    help: 'Raw CONNECT tunnels to hosts crossdock does not intercept, by outcome: opened, failed (refused or unreachable: 502) or timeout (504).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  })
  const tunnelBytes = new Counter({
    name: 'crossdock_tunnel_bytes_total',
    help: 'Bytes relayed through raw tunnels, by direction: up (client to far end) or down.',
    labelNames: ['direction'] as const,
    registers: [registry],
  })
  const tunnelsOpen = new Gauge({
    name: 'crossdock_tunnels_open',
    help: 'Raw tunnels open right now.',
    registers: [registry],
  })
  // Zero series for the bounded label values, so rate() and alerts see them before the first event.
  for (const outcome of ['opened', 'failed', 'timeout']) tunnels.inc({ outcome }, 0)
  for (const direction of ['up', 'down']) tunnelBytes.inc({ direction }, 0)
  for (const door of ['proxy', 'registry', 'director']) inFlight.set({ door }, 0)
  const hostedPushes = new Counter({
    name: 'crossdock_hosted_pushes_total',
    help: 'Manifests pushed to the hosted registry (PUT of a manifest answered 201), through either door.',
    registers: [registry],
  })
  const hostedPulls = new Counter({
    name: 'crossdock_hosted_pulls_total',
    help: 'Manifests pulled from the hosted registry (GET of a manifest answered 200), through either door.',
    registers: [registry],
  })

  const refusals = new Counter({
    name: 'crossdock_destination_refused_total',
    help: 'Destinations the destination policy refused (tunnels, redirect hops, token realms), by reason (loopback, link-local, unspecified, multicast, own-address, denied, not-allowed, insecure-scheme, invalid) and purpose (tunnel, upstream).',
    labelNames: ['reason', 'purpose'] as const,
    registers: [registry],
  })

  const pullsDenied = new Counter({
    name: 'crossdock_pulls_denied_total',
    help: 'Upstream reads (manifests, blobs, tags) refused by PULL_DENY or PULL_ALLOW, by registry and rule (the pattern, or PULL_ALLOW when none of its patterns matched).',
    labelNames: ['registry', 'rule'] as const,
    registers: [registry],
  })
  const segmentDecisions = new Counter({
    name: 'crossdock_upstream_segment_decisions_total',
    help: 'Large blob downloads (UPSTREAM_SEGMENTS above 1, UPSTREAM_SEGMENT_RATE not 0) by how their rest came: segmented (the first connection was slower than UPSTREAM_SEGMENT_RATE) or single (one more range request).',
    labelNames: ['decision'] as const,
    registers: [registry],
  })

  // ── scrape-time values ──────────────────────────────────────────────────────────────────────
  new Gauge({
    name: 'crossdock_cache_size_bytes',
    help: 'Bytes held by the pull-through cache (committed entries).',
    registers: [registry],
    collect () { const s = sources.cache?.stats(); if (s !== undefined) this.set(s.usedBytes) },
  })
  new Gauge({
    name: 'crossdock_cache_max_size_bytes',
    help: 'The cache\'s size bound (CACHE_MAX_SIZE).',
    registers: [registry],
    collect () { const s = sources.cache?.stats(); if (s !== undefined) this.set(s.maxSize) },
  })
  new Gauge({
    name: 'crossdock_cache_entries',
    help: 'Entries in the pull-through cache (blobs, manifests and tag records).',
    registers: [registry],
    collect () { const s = sources.cache?.stats(); if (s !== undefined) this.set(s.entries) },
  })
  new Gauge({
    name: 'crossdock_cache_fills_in_flight',
    help: 'Blob downloads being written into the cache right now.',
    registers: [registry],
    collect () { const s = sources.cache?.stats(); if (s !== undefined) this.set(s.inflight) },
  })
  new Counter({
    name: 'crossdock_cache_evictions_total',
    help: 'Cache entries removed since start, by reason: size (CACHE_MAX_SIZE) or inactive (CACHE_INACTIVE).',
    labelNames: ['reason'] as const,
    registers: [registry],
    // The store counts; a counter cannot be set, so it is re-filled with the store's totals.
    collect () {
      const s = sources.cache?.stats()
      if (s === undefined) return
      this.reset()
      this.inc({ reason: 'size' }, s.evictions)
      this.inc({ reason: 'inactive' }, s.expirations)
    },
  })
  new Counter({
    name: 'crossdock_cache_fills_failed_total',
    help: 'Blob downloads into the cache that failed (upstream error, truncation, wrong digest, idle timeout); nothing of them was committed.',
    registers: [registry],
    collect () {
      const s = sources.cache?.stats()
      if (s === undefined) return
      this.reset()
      this.inc(s.fillsFailed ?? 0)
    },
  })
  new Counter({
    name: 'crossdock_prefetch_blobs_total',
    help: 'Blobs prefetched when their image manifest passed, by outcome: started (a download began), joined (a client asked for it while it downloaded) or skipped (see crossdock_prefetch_skipped_total).',
    labelNames: ['outcome'] as const,
    registers: [registry],
    collect () {
      const s = sources.prefetch?.stats()
      if (s === undefined) return
      this.reset()
      this.inc({ outcome: 'started' }, s.started)
      this.inc({ outcome: 'joined' }, s.joined)
      this.inc({ outcome: 'skipped' }, Object.values(s.skipped).reduce((a, b) => a + b, 0))
    },
  })
  new Counter({
    name: 'crossdock_prefetch_skipped_total',
    help: 'Blobs not prefetched, by reason: cached, inflight, queued, budget (PREFETCH_IMAGE_BUDGET), ratelimit (upstream 429 or low RateLimit-Remaining), no-room, upstream-error, queue-full.',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect () {
      const s = sources.prefetch?.stats()
      if (s === undefined) return
      this.reset()
      for (const [reason, n] of Object.entries(s.skipped)) this.inc({ reason }, n)
    },
  })
  new Gauge({
    name: 'crossdock_prefetch_queued',
    help: 'Blobs waiting in the prefetch queue (PREFETCH_CONCURRENCY download at once).',
    registers: [registry],
    collect () { const s = sources.prefetch?.stats(); if (s !== undefined) this.set(s.queued) },
  })
  new Counter({
    name: 'crossdock_certificates_minted_total',
    help: 'Leaf certificates minted for intercepted hosts since start.',
    registers: [registry],
    collect () {
      if (sources.minter === undefined) return
      this.reset()
      this.inc(sources.minter.minted)
    },
  })
  new Gauge({
    name: 'crossdock_ready',
    help: '1 when /readyz would answer 200 (CA valid, directories writable, free disk above CACHE_MIN_FREE), else 0.',
    registers: [registry],
    async collect () { if (sources.ready !== undefined) this.set(await sources.ready() ? 1 : 0) },
  })
  const storageEveryMs = opts.storageEveryMs ?? 60_000
  let storage: { at: number, bytes: Promise<number> } | undefined
  new Gauge({
    name: 'crossdock_hosted_storage_bytes',
    help: 'Bytes of blob content in the hosted registry\'s storage (REGISTRY_STORAGE_DIR).',
    registers: [registry],
    // A directory walk: kept until a hosted write (or a minute, for `crossdock gc` running outside)
    // so that a 1 s scrape interval does not walk a large registry every second.
    async collect () {
      const walk = sources.hostedStorageBytes
      if (walk === undefined) return
      if (storage === undefined || Date.now() - storage.at >= storageEveryMs) storage = { at: Date.now(), bytes: walk() }
      this.set(await storage.bytes.catch(() => Number.NaN))
    },
  })

  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry })

  const observeRequest: RequestObserver = Object.assign((line: RequestLogLine) => {
    const kind = requestKind(line.path)
    inFlight.dec({ door: line.door })
    requests.inc({ door: line.door, kind, status: String(line.status) })
    duration.observe({ door: line.door, method: METHODS.has(line.method ?? '') ? line.method : 'other', kind }, line.ms / 1000)
    if (line.abandoned !== undefined) abandoned.inc({ door: line.door, kind, reason: line.abandoned })
    const cacheStatus = line.cacheStatus
    if (cacheStatus === undefined || !CACHE_STATUSES.has(cacheStatus)) return
    const reg = registryOf(line.host)
    cacheRequests.inc({ registry: reg, kind, cache_status: cacheStatus })
    if (line.bytes > 0) pullThroughBytes.inc({ registry: reg, kind, source: FROM_CACHE.has(cacheStatus) ? 'cache' : 'upstream' }, line.bytes)
  }, { started: (fields: RequestLogFields) => { inFlight.inc({ door: fields.door }) } })

  return {
    registry,
    observeRequest,
    cluster: registerClusterMetrics(registry),
    tunnels: {
      failed: outcome => tunnels.inc({ outcome }),
      opened: () => { tunnels.inc({ outcome: 'opened' }); tunnelsOpen.inc() },
      bytes: (direction, n) => tunnelBytes.inc({ direction }, n),
      closed: () => tunnelsOpen.dec(),
    },
    observeUpstream: r => {
      const host = r.host.toLowerCase()
      const status = r.status === 0 ? 'error' : String(r.status)
      upstreamRequests.inc({ host, status })
      upstreamLatency.observe({ host, status }, r.ms / 1000)
      const limit = rateLimitValue(r.headers['ratelimit-limit'])
      const remaining = rateLimitValue(r.headers['ratelimit-remaining'])
      if (limit !== undefined) rateLimit.set({ host }, limit)
      if (remaining !== undefined) rateRemaining.set({ host }, remaining)
    },
    observeHosted: r => {
      if (WRITES.has(r.method) && r.status < 300) storage = undefined
      if (!MANIFEST_REFERENCE.test(r.path)) return
      if (r.method === 'PUT' && r.status === 201) hostedPushes.inc()
      else if (r.method === 'GET' && r.status === 200) hostedPulls.inc()
    },
    observeRefusal: r => { refusals.inc({ reason: r.reason, purpose: r.purpose }) },
    observePullDenied: r => { pullsDenied.inc({ registry: registryOf(r.host), rule: r.rule }) },
    observeSegmentDecision: decision => { segmentDecisions.inc({ decision }) },
    collectFrom: s => { sources = { ...sources, ...s } },
    render: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
  }
}

/**
 * What a request was about, from its path only (a door may mount the API below a prefix, so
 * the patterns are not anchored at the start): manifests by digest are `manifest`, by tag `tag`.
 */
export function requestKind (path: string | undefined): RequestKind {
  if (path === undefined) return 'other'
  if (UPLOAD_PATH.test(path)) return 'upload'
  if (BLOB_PATH.test(path)) return 'blob'
  const m = MANIFEST_REFERENCE.exec(path)
  // A digest reference has a colon (`sha256:…`, maybe as %3A); a tag never does.
  if (m !== null) return /:|%3a/i.test(m[1]) ? 'manifest' : 'tag'
  return 'other'
}

/** `76;w=21600` → 76 (Docker Hub: remaining pulls, then the window in seconds). */
export function rateLimitValue (header: string | string[] | undefined): number | undefined {
  const v = Array.isArray(header) ? header[0] : header
  if (v === undefined) return undefined
  const m = /^\s*(\d+)/.exec(v)
  return m === null ? undefined : Number(m[1])
}

/**
 * The hosted registry with its pushes and pulls counted. Both doors call `handle` (the registry
 * port, and HOSTED_HOSTNAMES through the proxy door), so wrapping it counts each request once.
 */
export function countHostedRequests<H extends { handle: (req: IncomingMessage, res: ServerResponse, ctx: never) => Promise<void> }> (hosted: H, metrics: Pick<Metrics, 'observeHosted'>): H {
  type Ctx = Parameters<H['handle']>[2]
  const handle = hosted.handle.bind(hosted) as (req: IncomingMessage, res: ServerResponse, ctx: Ctx) => Promise<void>
  const counted = async (req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> => {
    res.once('finish', () => metrics.observeHosted({ method: req.method ?? '', path: req.url ?? '', status: res.statusCode }))
    await handle(req, res, ctx)
  }
  return { ...hosted, handle: counted }
}
