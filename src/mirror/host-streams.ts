/**
 * The blob downloads running from each upstream host (the clients' and the prefetcher's alike), the
 * bytes they brought, and how many the host's link is worth at once (adaptive-limit.ts).
 *
 *   pull-through leads a fill ─┐
 *   prefetch leads a fill ─────┴─► noteFill(host, fill) ─► running(host) +1 until fill.done settles
 *   every SAMPLE_MS while any fill runs: bytes = finished + Σ fill.written ─► AdaptiveLimit.observe
 *   a limit that changed, or a fill that ended ─► onChange (the prefetcher looks at its queue again)
 *
 * The fills' own `written` counters are read on a timer rather than counting chunks on the way, so
 * a byte costs nothing here (issue 20 also counts CPU per byte).
 */
import type { Logger } from '../log.js'
import { AdaptiveLimit, SPAN_MS } from './adaptive-limit.js'

/** What is read of a running fill (BlobFill has both). */
export interface FillProgress {
  /** Bytes received so far; only grows. */
  readonly written: number
  /** Settles (either way) when the download ends. */
  readonly done: Promise<void>
}

export interface HostStreamsOptions {
  /** Streams a host starts at before anything is measured. */
  initial: number
  /** Streams a host may reach at most. */
  max: number
  /** Called when a host may have room again (a limit changed, a fill ended). */
  onChange: () => void
  /** Limit changes are logged at debug (what the link showed, for whoever tunes prefetching). */
  log?: Logger
  now?: () => number
  /** Timer injection (tests drive `sample()` themselves and pass a no-op). */
  setInterval?: (fn: () => void, ms: number) => { unref?: () => void }
  clearInterval?: (timer: unknown) => void
}

/** Hosts remembered at most (the proxy door sees any host a client names); idle ones go first. */
const MAX_HOSTS = 1000
/** Samples per window, so a window closes close to its length. */
const SAMPLE_MS = SPAN_MS / 5

interface Host { limit: AdaptiveLimit, fills: Set<FillProgress>, finishedBytes: number }

export class HostStreams {
  private readonly hosts = new Map<string, Host>()
  private readonly now: () => number
  private timer: unknown
  private tracked = 0
  private stopped = false

  constructor (private readonly opts: HostStreamsOptions) {
    this.now = opts.now ?? (() => performance.now())
  }

  /** A download from `host` began (its response headers arrived); counted until it settles. */
  noteFill (host: string, fill: FillProgress): void {
    const h = this.host(host)
    if (h.fills.has(fill)) return
    h.fills.add(fill)
    this.tracked++
    this.observe(h)
    if (this.timer === undefined && !this.stopped) {
      const set = this.opts.setInterval ?? setInterval
      const timer = set(() => this.sample(), SAMPLE_MS)
      timer.unref?.()
      this.timer = timer
    }
    const settled = (): void => {
      h.fills.delete(fill)
      h.finishedBytes += fill.written
      this.tracked--
      this.observe(h)
      if (this.tracked === 0) this.stopTimer()
      this.opts.onChange()
    }
    fill.done.then(settled, settled)
  }

  running (host: string): number {
    return this.hosts.get(host)?.fills.size ?? 0
  }

  limit (host: string): number {
    return this.hosts.get(host)?.limit.limit ?? Math.min(this.opts.initial, this.opts.max)
  }

  /** Feeds every host's byte count to its limit (the timer calls it; tests call it directly). */
  sample (): void {
    let changed = false
    for (const [host, h] of this.hosts) {
      if (h.fills.size === 0) continue
      const before = h.limit.limit
      this.observe(h)
      if (h.limit.limit === before) continue
      changed = true
      this.opts.log?.debug({ host, streams: h.fills.size, limit: h.limit.limit, was: before, spans: h.limit.last }, 'host stream limit')
    }
    if (changed) this.opts.onChange()
  }

  /** Shutdown: no more sampling (fills still running are counted down as they settle). */
  stop (): void {
    this.stopped = true
    this.stopTimer()
  }

  private observe (h: Host): void {
    let bytes = h.finishedBytes
    for (const f of h.fills) bytes += f.written
    h.limit.observe(this.now(), bytes, h.fills.size)
  }

  private host (name: string): Host {
    let h = this.hosts.get(name)
    if (h !== undefined) {
      // Most recently used last, so the eviction below finds the stalest first.
      this.hosts.delete(name)
      this.hosts.set(name, h)
      return h
    }
    if (this.hosts.size >= MAX_HOSTS) {
      for (const [k, v] of this.hosts) if (v.fills.size === 0) { this.hosts.delete(k); break }
    }
    h = { limit: new AdaptiveLimit({ initial: this.opts.initial, min: 1, max: this.opts.max }), fills: new Set(), finishedBytes: 0 }
    this.hosts.set(name, h)
    return h
  }

  private stopTimer (): void {
    if (this.timer === undefined) return
    ;(this.opts.clearInterval ?? clearInterval)(this.timer as NodeJS.Timeout)
    this.timer = undefined
  }
}
