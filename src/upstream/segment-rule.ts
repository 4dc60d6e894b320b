/**
 * When a blob download turns segmented (issue 20): only where its first connection is slow.
 *
 * Measured (bench/wan-pull.ts): where a link caps each connection (50 Mbit/s, 50 ms RTT) only more
 * connections per blob speed up a client that already fetches every blob at once (ctr); on an
 * unthrottled upstream segments cost CPU and made pulls slower, and on a 200 Mbit/s shared link
 * they gained nothing. So the first answer's rate decides:
 *
 *   first answer  ──first byte──────────── half of the first piece ──────── end of the first piece
 *                 |  rate = bytes after the first chunk / time flowing  |
 *                                                     └─ decide: rate < UPSTREAM_SEGMENT_RATE
 *                                                          yes: the rest in K-1 pieces (segmented)
 *                                                          no:  the rest as one range (single)
 *
 * Deciding at half (not at the end) lets the rest's requests start while the first piece's tail
 * still arrives: at 50 Mbit/s the second half of 4 MiB takes ~0.34 s, more than a new TLS
 * connection and its request (~3 RTT, 0.15 s at 50 ms), so no round trip is added either way.
 */

/** Which way the rest of a blob comes (also the metric's label). */
export type SegmentDecision = 'segmented' | 'single'

/**
 * Below this many bytes measured, one TCP window's burst dominates the sample: a first piece
 * under twice this is measured to its end instead of to its half.
 */
export const MIN_MEASURED = 256 << 10

/** How many bytes of the first piece must have arrived before the decision. */
export function decisionPoint (firstSize: number): number {
  const half = Math.ceil(firstSize / 2)
  return half >= MIN_MEASURED ? half : firstSize
}

/** Milliseconds on a monotonic clock; tests inject their own. */
export type Clock = () => number

export const monotonic: Clock = () => performance.now()

/**
 * The rate of one connection's body, from its first byte (time to first byte is the upstream's
 * think time and the handshakes, not the link), leaving out the time the body was paused because
 * the reader was behind (backpressure is not a slow link).
 */
export class RateProbe {
  private firstAt?: number
  /** Bytes after the first chunk (the first chunk's bytes took no measurable time). */
  private bytes = 0
  private pausedMs = 0
  private pausedAt?: number

  constructor (private readonly now: Clock) {}

  received (n: number): void {
    if (this.firstAt === undefined) this.firstAt = this.now()
    else this.bytes += n
  }

  pause (): void {
    if (this.pausedAt === undefined && this.firstAt !== undefined) this.pausedAt = this.now()
  }

  resume (): void {
    if (this.pausedAt === undefined) return
    this.pausedMs += this.now() - this.pausedAt
    this.pausedAt = undefined
  }

  /** Bytes per second so far; Infinity when no time passed flowing (it all came at once). */
  rate (): number {
    if (this.firstAt === undefined) return 0
    const now = this.now()
    const pausedMs = this.pausedMs + (this.pausedAt !== undefined ? now - this.pausedAt : 0)
    const flowingMs = now - this.firstAt - pausedMs
    return flowingMs <= 0 ? Infinity : this.bytes * 1000 / flowingMs
  }
}

/** `threshold` 0 segments always (the rule off); otherwise only a connection slower than it. */
export function decide (rate: number, threshold: number): SegmentDecision {
  return threshold <= 0 || rate < threshold ? 'segmented' : 'single'
}
