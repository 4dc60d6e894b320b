/**
 * How many downloads from one upstream host may run at once so that prefetching helps (issue 20):
 * a hill climb on the host's aggregate throughput, fed with byte counts and a clock (no timers
 * here, so tests drive it with made-up figures).
 *
 *   observe(now, bytes so far, streams now) ──► windows of WINDOW_MS: rate R, mean streams n
 *   (the first SETTLE_MS after the limit changed are no window: streams take a request and an RTT
 *   to follow it)
 *   this window and one of the two before it, n differing by ≥ STEP: lo = fewer streams, hi = more
 *     R_hi / R_lo − 1 ≥ GAIN × (n_hi / n_lo − 1) ─► "scales": the link caps each connection,
 *                                                   limit = 2 × n_hi (slow start, up to MAX)
 *     otherwise                                ─► "full": more streams only split the link,
 *                                                   limit = n_lo rounded (at least MIN)
 *   no verdict for PROBE_WINDOWS windows while streams fill the limit ─► limit = ⌈n⌉ + 1 (probe);
 *   before the first verdict, one such window is enough (a pull lasts seconds: learn fast)
 *
 * Why: on a link that caps each connection (a long fat pipe, a CDN shaping connections) every
 * stream adds its cap, and prefetching 8 at once beats dockerd's 3. On a link that is already full,
 * every extra stream takes its share from the layers the client waits for: dockerd extracts layers
 * in order as each completes, so 8 streams at once made its first layers arrive late and the pull
 * slower than direct (bench/wan-pull.ts, 200 Mbit/s shared: 1.07–1.34× with 8, 1.00× without).
 * The streams counted are every download from the host (the clients' own included), since they all
 * share the link.
 */

/** Length of one measurement window: several RTTs on a WAN, enough bytes to average a link. */
export const WINDOW_MS = 250
/** After the limit changed, this long is not measured (a new stream's request and first bytes). */
const SETTLE_MS = 100
/** Two windows are compared when their mean stream counts differ by at least this. */
const STEP = 0.75
/** Share of the proportional gain that counts as "scales" (a stream adding half its share). */
const GAIN = 0.5
/** Windows with no verdict, the limit filled, before one more stream is tried. */
const PROBE_WINDOWS = 8

export interface AdaptiveLimitOptions {
  /** Streams the limit starts at (before anything is known of the host). */
  initial: number
  /** The limit never goes below this... */
  min: number
  /** ...nor above this. */
  max: number
}

interface Window { rate: number, streams: number }

export class AdaptiveLimit {
  private current: number
  /** Start of the open window, and the bytes and stream-time integrated in it. */
  private start: number | undefined
  private startBytes = 0
  private streamTime = 0
  private lastAt = 0
  private lastStreams = 0
  /** The last two windows, newest first (none across an idle window). */
  private history: Window[] = []
  private quietWindows = 0
  private decided = false
  private settleUntil = 0

  constructor (private readonly opts: AdaptiveLimitOptions) {
    this.current = clamp(opts.initial, opts.min, opts.max)
  }

  /** Streams that may run at once now. */
  get limit (): number {
    return this.current
  }

  /**
   * `bytes`: everything received from the host so far (only grows); `streams`: downloads running
   * from now until the next call. Call it whenever either changes and at least once per window.
   */
  observe (now: number, bytes: number, streams: number): void {
    if (this.start === undefined || now < this.settleUntil) {
      this.begin(now, bytes, streams)
      return
    }
    this.streamTime += this.lastStreams * (now - this.lastAt)
    this.lastAt = now
    this.lastStreams = streams
    const length = now - this.start
    if (length < WINDOW_MS) return
    const w: Window = { rate: (bytes - this.startBytes) / length, streams: this.streamTime / length }
    this.begin(now, bytes, streams)
    const before = this.current
    this.decide(w)
    if (this.current !== before) this.settleUntil = now + SETTLE_MS
  }

  private begin (now: number, bytes: number, streams: number): void {
    this.start = now
    this.startBytes = bytes
    this.streamTime = 0
    this.lastAt = now
    this.lastStreams = streams
  }

  private decide (w: Window): void {
    // An idle window says nothing of the link, and a comparison across it would mix two pulls.
    if (w.streams < 0.5 || w.rate <= 0) { this.history = []; return }
    const prev = this.history.find(h => Math.abs(w.streams - h.streams) >= STEP)
    this.history = [w, ...this.history].slice(0, 2)
    if (prev !== undefined) {
      const [lo, hi] = w.streams > prev.streams ? [prev, w] : [w, prev]
      const scales = hi.rate / lo.rate - 1 >= GAIN * (hi.streams / lo.streams - 1)
      this.current = clamp(scales ? Math.max(this.current, Math.ceil(2 * hi.streams)) : Math.round(lo.streams), this.opts.min, this.opts.max)
      this.quietWindows = 0
      this.decided = true
      // The windows before this one are not weighed again against the ones to come.
      this.history = [w]
      return
    }
    // Links change (other traffic comes and goes): now and then try one stream more.
    if (w.streams >= this.current - 0.5 && ++this.quietWindows >= (this.decided ? PROBE_WINDOWS : 1)) {
      this.current = clamp(Math.ceil(w.streams) + 1, this.opts.min, this.opts.max)
      this.quietWindows = 0
    }
  }
}

function clamp (n: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, n))
}
