/**
 * How many downloads from one upstream host may run at once so that prefetching helps (issue 20):
 * a hill climb on the host's aggregate throughput, fed with byte counts and a clock (no timers
 * here, so tests drive it with made-up figures).
 *
 *   observe(now, bytes so far, streams now)
 *     ──► a span: the time under one limit (less its first SETTLE_MS: streams take a request and
 *         an RTT to follow a new limit), at least SPAN_MS long: rate R, mean streams n
 *   this span against the one before, n differing by ≥ STEP: lo = fewer streams, hi = more
 *     gain = (R_hi / R_lo − 1) / (n_hi / n_lo − 1)   (1: each stream adds its share; 0: none)
 *     gain ≥ SCALES ─► "scales": the link caps each connection, limit = 2 × n_hi (slow start)
 *     gain ≤ FULL   ─► "full": more streams only split the link, limit = n_lo rounded (never up)
 *     in between    ─► no verdict: the limit stays (a loaded machine blurs spans; a wrong "full"
 *                      cost a capped link its gain: 0.97× of direct instead of 0.57× in one run)
 *   no verdict yet, streams filling the limit  ─► probe: limit = 2 × ⌈n⌉ after one span (a
 *                                                   step that big reads clearly even on a loaded
 *                                                   machine: 2→3 streams did not, 3→6 does)
 *   known, streams filling the limit, PROBE_MS ─► probe: limit = ⌈n⌉ + 1 (links change)
 *   a span that stays short of STEP from the one before keeps growing: a longer average
 *   the first span after idle is neither weighed nor a baseline (a pull's start ramps)
 *
 * Why: on a link that caps each connection (a long fat pipe, a CDN shaping connections) every
 * stream adds its cap, and prefetching 8 at once beats dockerd's 3. On a link that is already full,
 * every extra stream takes its share from the layers the client waits for: dockerd extracts layers
 * in order as each completes, so 8 streams at once made its first layers arrive late and the pull
 * slower than direct (bench/wan-pull.ts, 200 Mbit/s shared: 1.07–1.34× with 8, 1.00× without).
 * The streams counted are every download from the host (the clients' own included), since they all
 * share the link.
 *
 * A probe costs more than its span: the downloads it lets start run to their end (a fill is the
 * cache's), sharing a full link all along. Hence, once the link is known, one stream at a time
 * and rarely; the first probe, a few streams for one layer each, cost a full 200 Mbit/s link
 * about what 3 prefetch downloads beside dockerd's 3 cost: 1.03× of direct where 8 cost 1.07–1.34×.
 */

/** Shortest span compared: several RTTs on a WAN, enough bytes to average a loaded link. */
export const SPAN_MS = 300
/** After the limit changed, this long is not measured (a new stream's request and first bytes). */
const SETTLE_MS = 100
/** Two spans are compared when their mean stream counts differ by at least this. */
const STEP = 0.75
/** Share of the proportional gain that counts as "scales" (a stream adding half its share)... */
const SCALES = 0.5
/** ...and as "full" (a shared link gives about 0). */
const FULL = 0.2
/** Time without a verdict, the limit filled, before one more stream is tried again. */
const PROBE_MS = 5000

export interface AdaptiveLimitOptions {
  /** Streams the limit starts at (before anything is known of the host). */
  initial: number
  /** The limit never goes below this... */
  min: number
  /** ...nor above this. */
  max: number
}

interface Span { rate: number, streams: number }

export class AdaptiveLimit {
  private current: number
  /** The open span: its start (undefined: none yet), bytes then, and streams × ms integrated. */
  private start: number | undefined
  private startBytes = 0
  private streamTime = 0
  private lastAt = 0
  private lastStreams = 0
  private settleUntil = 0
  /** The span closed before this one (undefined at first and after an idle span). */
  private previous: Span | undefined
  private decided = false
  /** The open span is the first since idle (or ever). */
  private warming = true
  /** The two spans weighed for the latest change of limit, and the gain found (for the debug log); undefined after a probe. */
  last: { lo: Span, hi: Span, gain: number } | undefined

  constructor (private readonly opts: AdaptiveLimitOptions) {
    this.current = clamp(opts.initial, opts.min, opts.max)
  }

  /** Streams that may run at once now. */
  get limit (): number {
    return this.current
  }

  /**
   * `bytes`: everything received from the host so far (only grows); `streams`: downloads running
   * from now until the next call. Call it whenever either changes and every few tens of ms.
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
    if (length < SPAN_MS) return
    const span: Span = { rate: (bytes - this.startBytes) / length, streams: this.streamTime / length }
    const next = this.decide(span, length)
    if (next === undefined) return // the span goes on
    const idle = span.streams < 0.5 || span.rate <= 0
    // The first span after idle holds the pull's start (requests on their way, clients' downloads
    // still arriving): as a baseline it made the ramp read as "scales" on a full link (2→5, gain 0.5).
    this.previous = idle || this.warming ? undefined : span
    this.warming = idle
    if (next !== this.current) this.settleUntil = now + SETTLE_MS
    this.current = clamp(next, this.opts.min, this.opts.max)
    this.begin(now, bytes, streams)
  }

  private begin (now: number, bytes: number, streams: number): void {
    this.start = now
    this.startBytes = bytes
    this.streamTime = 0
    this.lastAt = now
    this.lastStreams = streams
  }

  /** The limit after this span, or undefined to let it run on. */
  private decide (span: Span, length: number): number | undefined {
    this.last = undefined
    // An idle span says nothing of the link, and a comparison across it would mix two pulls.
    if (span.streams < 0.5 || span.rate <= 0) return this.current
    // A probe is weighed against the span before it: the first span is only a baseline to come.
    if (this.warming) return this.current
    const prev = this.previous
    if (prev !== undefined && Math.abs(span.streams - prev.streams) >= STEP) {
      const [lo, hi] = span.streams > prev.streams ? [prev, span] : [span, prev]
      const gain = (hi.rate / lo.rate - 1) / (hi.streams / lo.streams - 1)
      this.last = { lo, hi, gain }
      this.decided ||= gain >= SCALES || gain <= FULL
      if (gain >= SCALES) return Math.max(this.current, Math.ceil(2 * hi.streams))
      // Never up on "full": spans after a drop still hold the streams a probe started (they run on).
      if (gain <= FULL) return Math.min(this.current, Math.round(lo.streams))
      return this.current
    }
    const demand = span.streams >= this.current - 0.5
    if (demand && !this.decided) return 2 * Math.ceil(span.streams)
    if (demand && length >= PROBE_MS) return Math.ceil(span.streams) + 1
    return prev === undefined ? this.current : undefined
  }
}

function clamp (n: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, n))
}
