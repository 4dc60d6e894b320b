/**
 * Prefetch: when an image manifest passes on its way to a client, start fetching its config and
 * layers that are not cached, before the client asks for them (issue 20).
 *
 *   manifest GET answered 200 (either door, by tag or digest)
 *     image manifest ─► descriptors (config, layers) ─► budget (PREFETCH_IMAGE_BUDGET) ─► queue
 *     index / anything else ─► nothing (the platform manifest the client picks comes next)
 *   queue ──(at most PREFETCH_CONCURRENCY downloads, and the host's link not full)──► cache.openOrFill
 *     cached / in flight meanwhile ─► skipped (a client got there first: clients never wait here)
 *     leader ─► BlobFill, the cache's own: a client asking for the blob joins it (JOINED)
 *     non-200 / no room ─► the body is dropped; a 429 pauses prefetching from that host
 *
 * Why: dockerd fetches 3 layers at a time and containerd waits for the client's pace; on a link
 * that caps each connection (one TCP stream gets window/RTT) the client's parallelism is the pull's
 * ceiling. Fetching ahead in parallel makes a cold pull through crossdock faster than direct.
 *
 * A link that is already full is not split further (host-streams.ts, adaptive-limit.ts): every
 * download from the host counts, the clients' own included, and a task waits while the host runs
 * as many as its link has shown to be worth. On a link that caps each connection that grows to
 * PREFETCH_CONCURRENCY; on a full shared one, extra streams would only delay the layers the
 * client extracts first (dockerd: in order, as each completes).
 *
 * Clients first: a client's own request never goes through this queue. A client asking for a
 * blob still queued here fetches it itself (the cache's single flight), and the queued task then
 * finds it in flight and skips. undici's Agent has no per-origin connection limit, so a prefetch
 * holds no slot a client would wait for.
 *
 * Private stays private: `fetch` is the pull-through's own blob fetch, bound to the credentials of
 * the request that fetched the manifest (its upstream Authorization on the proxy door, the door's
 * token dance on the registry door), and it reports to the access policy exactly as a client's
 * fetch would (`recordFetch`), so a prefetched private layer is as restricted as a fetched one.
 *
 * A prefetch outlives the client that caused it (the fill is the cache's), bounded by the per-image
 * byte budget and by rate-limit headroom: an upstream 429, or a RateLimit-Remaining below
 * RATELIMIT_RESERVE, pauses prefetching from that host (Docker Hub counts manifest GETs, which the
 * clients themselves still need).
 */
import type { Logger } from '../log.js'
import type { BlobFill } from '../cache/blob-fill.js'
import type { CacheBlobStore, FetchedBlob } from '../cache/stores.js'
import { tryParseDigest, type Digest } from '../oci/digest.js'
import { discardBody } from '../upstream/body.js'
import { headerValue } from '../upstream/headers.js'
import type { UpstreamResponse } from '../upstream/upstream-client.js'
import { HostStreams, type FillProgress, type HostStreamsOptions } from './host-streams.js'

export type SkipReason = 'cached' | 'inflight' | 'queued' | 'budget' | 'ratelimit' | 'no-room' | 'upstream-error' | 'queue-full'
export const SKIP_REASONS: readonly SkipReason[] = ['cached', 'inflight', 'queued', 'budget', 'ratelimit', 'no-room', 'upstream-error', 'queue-full']

/** What the prefetcher needs of the cache's blob store. */
export type PrefetchCache = Pick<CacheBlobStore, 'stat' | 'inflight' | 'openOrFill'>

/** An image manifest that passed, and how to fetch its blobs as the client that fetched it. */
export interface PassedManifest {
  host: string
  repository: string
  mediaType: string
  bytes: Buffer
  /** The pull-through's blob fetch with the manifest request's credentials and access context. */
  fetch: (digest: Digest) => Promise<FetchedBlob<UpstreamResponse>>
}

export interface PrefetchStats {
  /** Prefetch downloads started (this prefetcher led the fill). */
  started: number
  /** Prefetch downloads a client joined before they finished. */
  joined: number
  skipped: Record<SkipReason, number>
  queued: number
  active: number
}

export interface PrefetcherOptions {
  cache: PrefetchCache
  log: Logger
  /** Downloads at once (PREFETCH_CONCURRENCY); 0 turns prefetching off. */
  concurrency: number
  /** Bytes prefetched per image manifest at most (PREFETCH_IMAGE_BUDGET). */
  imageBudget: number
  /** Wait for the host's link to show it has room (PREFETCH_ADAPTIVE); false: only `concurrency`. */
  adaptive?: boolean
  now?: () => number
  /** Test injection of the host sampling timer (host-streams.ts). */
  timers?: Pick<HostStreamsOptions, 'setInterval' | 'clearInterval' | 'now'>
  /** Test hook: awaited before a queued task looks the digest up (hold the queue with it). */
  beforeTask?: (digest: Digest) => Promise<void> | void
}

/** Media types of single-platform image manifests (an index is never prefetched from). */
const IMAGE_MANIFESTS = new Set(['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'])
/** Tasks waiting at most; beyond, manifests passing are not prefetched from (a pull storm). */
const MAX_QUEUED = 10_000
/** RateLimit-Remaining below this pauses prefetching: the clients' own manifest GETs come first. */
const RATELIMIT_RESERVE = 10
/** How long a 429 without Retry-After (or a low RateLimit-Remaining) pauses prefetching from a host. */
const PAUSE_MS = 60_000

interface Task { digest: Digest, host: string, fetch: PassedManifest['fetch'] }

/** Streams a host starts at, before its link is measured: a client's own downloads come on top. */
const INITIAL_HOST_STREAMS = 2

export class Prefetcher {
  private readonly queue: Task[] = []
  private readonly queuedDigests = new Set<string>()
  private readonly pausedUntil = new Map<string, number>()
  private readonly now: () => number
  private readonly log: Logger
  private active = 0
  private stopped = false
  private started = 0
  private joined = 0
  private readonly skipped = Object.fromEntries(SKIP_REASONS.map(r => [r, 0])) as Record<SkipReason, number>
  private readonly idleWaiters: Array<() => void> = []
  /** Every host's running downloads and its limit; undefined when not adaptive. */
  private readonly hosts: HostStreams | undefined
  /** Tasks started per host whose download has not begun (or ended) yet: they will be streams. */
  private readonly starting = new Map<string, number>()

  constructor (private readonly opts: PrefetcherOptions) {
    this.now = opts.now ?? Date.now
    this.log = opts.log.child({ module: 'prefetch' })
    if (opts.adaptive !== false && opts.concurrency > 0) {
      // The host limit counts the clients' streams too: twice PREFETCH_CONCURRENCY leaves the
      // prefetcher its full concurrency next to a client's own downloads on a link that scales.
      this.hosts = new HostStreams({ initial: INITIAL_HOST_STREAMS, max: 2 * opts.concurrency, onChange: () => this.pump(), log: this.log, ...opts.timers })
    }
  }

  get enabled (): boolean {
    return this.opts.concurrency > 0
  }

  /** A manifest was answered 200 to a client's GET. Never throws; never delays the caller. */
  manifestPassed (m: PassedManifest): void {
    if (!this.enabled || this.stopped || !IMAGE_MANIFESTS.has(m.mediaType)) return
    const digests = blobsOf(m.bytes)
    if (digests === undefined) return
    let budget = this.opts.imageBudget
    for (const { digest, size } of digests) {
      if (this.opts.cache.stat(digest) !== undefined) { this.skip('cached'); continue }
      if (this.opts.cache.inflight(digest) !== undefined) { this.skip('inflight'); continue }
      if (this.queuedDigests.has(digest.value)) { this.skip('queued'); continue }
      // The budget stops the image's prefetch at the first blob that does not fit: what the client
      // asks for itself is fetched anyway, in its order.
      if (size > budget) { budget = -1; this.skip('budget'); continue }
      if (this.queue.length >= MAX_QUEUED) { this.skip('queue-full'); continue }
      budget -= size
      this.queue.push({ digest, host: m.host, fetch: m.fetch })
      this.queuedDigests.add(digest.value)
    }
    this.pump()
  }

  /** Every upstream answer (UpstreamClient's onResponse): 429 and low RateLimit-Remaining pause a host. */
  noteUpstream (r: { host: string, status: number, headers: Record<string, string | string[] | undefined> }): void {
    if (r.status === 429) {
      const after = Number(headerValue(r.headers, 'retry-after'))
      this.pause(r.host, Number.isFinite(after) && after > 0 ? after * 1000 : PAUSE_MS)
      return
    }
    const remaining = Number.parseInt(headerValue(r.headers, 'ratelimit-remaining') ?? '', 10)
    if (Number.isNaN(remaining)) return
    if (remaining < RATELIMIT_RESERVE) this.pause(r.host, PAUSE_MS)
    else this.pausedUntil.delete(r.host)
  }

  /**
   * A download from `host` began that a client leads (pull-through): it shares the host's link with
   * the prefetcher's, so it counts against the host's limit and its bytes measure the link.
   */
  noteFill (host: string, fill: FillProgress): void {
    this.hosts?.noteFill(host, fill)
  }

  /** Test hook: one sample of every host's byte counts (the timer's job otherwise). */
  sampleHosts (): void {
    this.hosts?.sample()
  }

  stats (): PrefetchStats {
    return { started: this.started, joined: this.joined, skipped: { ...this.skipped }, queued: this.queue.length, active: this.active }
  }

  /**
   * Shutdown: what is still queued is dropped and nothing new starts (a queued task would open an
   * upstream request on a client being closed). Downloads already running are the cache's fills and
   * finish under the shutdown's own timeout.
   */
  stop (): void {
    this.stopped = true
    this.hosts?.stop()
    for (const task of this.queue.splice(0)) this.queuedDigests.delete(task.digest.value)
    if (this.active === 0) for (const w of this.idleWaiters.splice(0)) w()
  }

  /** Resolves once nothing is queued or downloading (tests; shutdown). */
  async idle (): Promise<void> {
    if (this.active === 0 && this.queue.length === 0) return
    await new Promise<void>(resolve => this.idleWaiters.push(resolve))
  }

  private pause (host: string, ms: number): void {
    this.pausedUntil.set(host, Math.max(this.pausedUntil.get(host) ?? 0, this.now() + ms))
  }

  private skip (reason: SkipReason): void {
    this.skipped[reason]++
  }

  /** Whether the host's link has room for one more stream (always, when not adaptive). */
  private hasRoom (host: string): boolean {
    if (this.hosts === undefined) return true
    return this.hosts.running(host) + (this.starting.get(host) ?? 0) < this.hosts.limit(host)
  }

  private pump (): void {
    // In queue order (manifest order), skipping tasks whose host is full: another host may have room.
    for (let i = 0; i < this.queue.length && this.active < this.opts.concurrency;) {
      if (!this.hasRoom(this.queue[i].host)) { i++; continue }
      const task = this.queue.splice(i, 1)[0]
      this.active++
      this.starting.set(task.host, (this.starting.get(task.host) ?? 0) + 1)
      let began = false
      const begin = (): void => {
        if (began) return
        began = true
        const n = (this.starting.get(task.host) ?? 1) - 1
        if (n === 0) this.starting.delete(task.host)
        else this.starting.set(task.host, n)
      }
      this.run(task, begin).catch(err => {
        this.skip('upstream-error')
        this.log.debug({ host: task.host, digest: task.digest.value, err: (err as Error).message }, 'prefetch failed')
      }).finally(() => {
        begin()
        this.queuedDigests.delete(task.digest.value)
        this.active--
        this.pump()
        if (this.active === 0 && this.queue.length === 0) for (const w of this.idleWaiters.splice(0)) w()
      })
    }
  }

  /** `begin` is called once the task's download is counted by the host (or will never be). */
  private async run (task: Task, begin: () => void): Promise<void> {
    await this.opts.beforeTask?.(task.digest)
    if ((this.pausedUntil.get(task.host) ?? 0) > this.now()) { this.skip('ratelimit'); return }
    if (this.opts.cache.stat(task.digest) !== undefined) { this.skip('cached'); return }
    if (this.opts.cache.inflight(task.digest) !== undefined) { this.skip('inflight'); return }
    const source = await this.opts.cache.openOrFill(task.digest, async () => {
      const fetched = await task.fetch(task.digest)
      this.noteUpstream({ host: task.host, status: fetched.answer.status, headers: fetched.answer.headers })
      return fetched
    })
    switch (source.kind) {
      case 'cached': void source.fh.close(); this.skip('cached'); return
      case 'unshared': this.skip('inflight'); return
      case 'moving': this.skip('no-room'); return
      case 'answer': discardBody(source.answer.body); this.skip('upstream-error'); return
      case 'bypass': discardBody(source.answer.body); this.skip('no-room'); return
      case 'fill':
        // Nothing here reads the fill: the share openOrFill took for us goes straight back.
        source.handle.release()
        if (!source.leader) { this.skip('inflight'); return }
        this.hosts?.noteFill(task.host, source.fill)
        begin()
        await this.follow(source.fill)
    }
  }

  /** Holds the task's slot until the fill settles; a reader attaching meanwhile is a client joining. */
  private async follow (fill: BlobFill): Promise<void> {
    this.started++
    this.log.debug({ digest: fill.digest.value, size: fill.expectedSize }, 'prefetch started')
    const onAttach = (): void => { this.joined++ }
    fill.once('attach', onAttach)
    try {
      await fill.done
    } finally {
      fill.off('attach', onAttach)
    }
  }
}

/** The config and layer digests (with sizes) of an image manifest; undefined when it is not one. */
function blobsOf (bytes: Buffer): Array<{ digest: Digest, size: number }> | undefined {
  let m: { config?: unknown, layers?: unknown }
  try {
    m = JSON.parse(bytes.toString('utf8'))
  } catch {
    return undefined
  }
  const descriptors = [m.config, ...(Array.isArray(m.layers) ? m.layers : [])]
  const out: Array<{ digest: Digest, size: number }> = []
  for (const d of descriptors) {
    if (typeof d !== 'object' || d === null) continue
    const { digest, size, mediaType, urls } = d as { digest?: unknown, size?: unknown, mediaType?: unknown, urls?: unknown }
    // Foreign layers (Windows base layers) live at their `urls`, not in the registry.
    if (urls !== undefined || (typeof mediaType === 'string' && mediaType.includes('foreign'))) continue
    const parsed = typeof digest === 'string' ? tryParseDigest(digest) : undefined
    if (parsed === undefined) continue
    out.push({ digest: parsed, size: typeof size === 'number' && Number.isSafeInteger(size) && size >= 0 ? size : 0 })
  }
  return out
}
