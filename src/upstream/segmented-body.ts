/**
 * Segmented blob downloads (issue 20): one large blob fetched over several connections at once
 * with HTTP Range requests, as aria2 and axel do. On a link that caps each connection (a long fat
 * pipe: one TCP stream gets window/RTT; CDNs shape per connection) a blob then arrives K times as
 * fast, which no number of parallel *blobs* gives a client (ctr) that already fetches all at once.
 *
 *   requestBlob: GET blob, Range: bytes=0-(M-1)   M = UPSTREAM_SEGMENT_MIN_SIZE; same requester as
 *                                                 any blob GET: auth, destination policy, redirects
 *     200 ──────────────────────────────────────► as is: the upstream ignores Range, one stream
 *     416 ──────────────────────────────────────► a plain GET (an empty blob has no byte to range)
 *     206 bytes 0-(T-1)/T (T ≤ M: all of it) ───► a 200 of T bytes, that one stream
 *     206 bytes 0-(M-1)/T (T > M) ──────────────► a 200 of T bytes whose body is a SegmentedBody
 *     206 with any other Content-Range ─────────► dropped unread; a plain GET
 *     anything else ────────────────────────────► as is
 *
 *   SegmentedBody: [0, M) from the first answer, straight to the reader (no latency added to the
 *   first byte). Once half of it has arrived, its rate decides (segment-rule.ts; UPSTREAM_SEGMENT_RATE):
 *     at or above the rate ► the rest as ONE range `bytes=M-(T-1)`, started then on one more
 *                            connection (the first one ends a moment later), without a slot: it
 *                            replaces the first connection rather than adding one
 *     below it (or rate 0) ► the rest in K-1 pieces of (T-M)/(K-1) (at most 4 MiB each: more for a
 *                            large blob), started at once when the rate is 0:
 *     up to K-1 workers ──► `bytes=a-b` to the URL that answered the first GET (a CDN redirect is
 *                           followed once), each holding a slot (segment-slots.ts) from its request
 *                           until the reader has taken the piece; pieces ahead wait in memory
 *     the first answer's ─► once it ended, takes the next free pieces without a slot, so every
 *       worker             body progresses however busy the slots are; its connection is kept
 *   Every request ends where its range ends: no connection is cut, no byte is fetched twice (a
 *   first request for the whole blob, cut where the pieces began, wasted what was in flight: up to
 *   4 MiB of a shared link's time per blob in the WAN bench).
 *   Memory: a worker takes only pieces within K of the reader's, and a piece ahead holds a slot,
 *   so bytes buffered ahead ≤ K × piece size per body and ≤ slots × 4 MiB in all. The piece being
 *   read is paused while the reader is behind; a piece ahead (the single rest can be GBs) once it
 *   holds one piece size (4 MiB) unread.
 *   Errors: a piece that fails (reset, short, a 5xx) is asked again for its missing bytes, at most
 *   3 times; after that, or on any answer that is not the exact 206 asked for, the body errors (the
 *   fill fails, clients see an abort; the fill's digest check stays the last word).
 */
import { Readable } from 'node:stream'
import { ProxyError } from '../errors.js'
import { parseAnsweredRange } from '../oci/range.js'
import { discardBody } from './body.js'
import { headerValue } from './headers.js'
import { RateProbe, decide, decisionPoint, monotonic, type Clock, type SegmentDecision } from './segment-rule.js'
import type { SegmentSlots } from './segment-slots.js'
import type { UpstreamRequest, UpstreamRequester, UpstreamResponse } from './upstream-client.js'

export interface SegmentOptions {
  /** Connections per blob at most (UPSTREAM_SEGMENTS); 1 never sends a Range. */
  segments: number
  /** The first request asks for this many bytes: a blob up to this size is one request (UPSTREAM_SEGMENT_MIN_SIZE). */
  minSize: number
  /** The process-wide budget of extra connections. */
  slots: SegmentSlots
  /** Bytes per second (UPSTREAM_SEGMENT_RATE): a first connection this fast gets the rest as one range; 0 (or absent) always segments. */
  rate?: number
  /** Largest piece one range request asks for, and the most a piece ahead holds unread (tests make it small). */
  maxPiece?: number
  /** Time for the rate (tests inject theirs). */
  now?: Clock
  /** Told each decision (the metric). */
  onDecision?: (decision: SegmentDecision) => void
}

/** Sends the range request `bytes=start-end` (inclusive) for the blob. */
export type RangeFetch = (start: number, end: number, signal: AbortSignal) => Promise<UpstreamResponse>

/** 4 MiB: at 50 Mbit/s per connection a piece takes ~0.7 s, so the request's round trip costs <10 %. */
export const MAX_PIECE = 4 << 20
/** Tries per piece (the first included) before the body fails. */
const PIECE_TRIES = 3

/** A blob GET (see the header): the caller gets a 200 (or the upstream's answer) either way. */
export async function requestBlob (upstream: UpstreamRequester, req: UpstreamRequest, opts: SegmentOptions): Promise<UpstreamResponse> {
  if (opts.segments <= 1 || req.method !== 'GET') return await upstream.request(req)
  const firstSize = Math.max(1, opts.minSize)
  const first = await upstream.request({ ...req, headers: withRange(req.headers, `bytes=0-${firstSize - 1}`) })
  if (first.status === 416) {
    discardBody(first.body)
    return await upstream.request(req)
  }
  if (first.status !== 206) return first
  const range = parseAnsweredRange(headerValue(first.headers, 'content-range'))
  const whole = range !== undefined && range.start === 0 && range.end === range.size - 1
  if (range?.start !== 0 || (!whole && range.end !== firstSize - 1)) {
    // Not what was asked (a server that caps ranges, or a broken one): none of these bytes is
    // used; the blob is asked for as if segmenting did not exist.
    first.body.destroy()
    return await upstream.request(req)
  }
  const size = range.size
  const { 'content-range': _range, 'content-length': _length, ...headers } = first.headers
  const answer = { ...first, status: 200, headers: { ...headers, 'content-length': String(size) } }
  if (whole) return answer
  const body = new SegmentedBody({ ...opts, first: first.body, firstSize, size, fetchRange: rangeFetcher(upstream, req, first.url) })
  return { ...answer, body }
}

/**
 * Range requests go where the first GET was answered: after a redirect (a CDN's signed URL) to
 * that URL without Authorization (it was dropped on the way there too), else as the first went.
 */
function rangeFetcher (upstream: UpstreamRequester, req: UpstreamRequest, answeredUrl: string): RangeFetch {
  const asked = new URL(`${req.protocol ?? 'https:'}//${req.host}${req.path}`)
  const target = new URL(answeredUrl)
  if (target.href === asked.href) {
    return async (start, end, signal) => await upstream.request({ ...req, headers: withRange(req.headers, `bytes=${start}-${end}`), signal })
  }
  const headers = Object.fromEntries(Object.entries(req.headers ?? {}).filter(([k]) => k.toLowerCase() !== 'authorization'))
  return async (start, end, signal) => await upstream.request({
    host: target.host,
    protocol: target.protocol === 'http:' ? 'http:' : 'https:',
    method: 'GET',
    path: `${target.pathname}${target.search}`,
    headers: withRange(headers, `bytes=${start}-${end}`),
    signal,
  })
}

function withRange (headers: Record<string, unknown> | undefined, range: string): Record<string, unknown> {
  const rest = Object.fromEntries(Object.entries(headers ?? {}).filter(([k]) => k.toLowerCase() !== 'range'))
  return { ...rest, range }
}

interface Piece {
  start: number
  /** Exclusive. */
  end: number
  state: 'free' | 'taken' | 'done'
  /** Received, not yet handed to the reader, and their bytes. */
  chunks: Buffer[]
  held: number
  received: number
  /** The answer feeding it now, and whether it flows (not paused by us). */
  stream?: Readable
  flowing: boolean
  /** Holds a slot until the reader has taken it. */
  slot: boolean
}

/** requestBlob's options (but the first request's size, which the first answer now tells) and that answer. */
export interface SegmentedBodyOptions extends Omit<SegmentOptions, 'minSize'> {
  /** The body of the 206 answer to `bytes=0-(firstSize-1)`. */
  first: Readable
  firstSize: number
  size: number
  fetchRange: RangeFetch
}

/** The blob's bytes in order, fetched over up to `segments` connections (see the header). */
export class SegmentedBody extends Readable {
  private readonly pieces: Piece[] = []
  private readonly size: number
  private readonly segments: number
  private readonly slots: SegmentSlots
  private readonly fetchRange: RangeFetch
  private readonly abort = new AbortController()
  private readonly firstSize: number
  private readonly maxPiece: number
  /** Pieces whose answer is being read in. */
  private readonly streaming = new Set<Piece>()
  /** Until the decision: the first answer's rate, and the bytes of it to wait for. */
  private probe?: RateProbe
  private readonly decideAt: number
  private readonly rate: number
  private readonly onDecision?: (decision: SegmentDecision) => void
  /** The piece the reader is in. */
  private reading = 0
  /** Lowest piece that may be free (pieces are never freed again). */
  private freeFrom = 1
  private wanted = false
  private readerMoved: Array<() => void> = []

  constructor (o: SegmentedBodyOptions) {
    super({ highWaterMark: 64 << 10 })
    this.size = o.size
    this.segments = o.segments
    this.slots = o.slots
    this.fetchRange = o.fetchRange
    this.firstSize = Math.min(o.firstSize, o.size)
    this.maxPiece = o.maxPiece ?? MAX_PIECE
    this.rate = o.rate ?? 0
    this.onDecision = o.onDecision
    this.decideAt = decisionPoint(this.firstSize)
    this.pieces.push(newPiece(0, this.firstSize))
    this.pieces[0].state = 'taken'
    if (this.firstSize < o.size) {
      if (this.rate > 0) this.probe = new RateProbe(o.now ?? monotonic)
      else this.segment()
    }
    void this.fetchFirst(o.first)
  }

  /** The rule (segment-rule.ts), once `decideAt` bytes of the first answer are in. */
  private decide (): void {
    const decision = decide(this.probe?.rate() ?? 0, this.rate)
    this.probe = undefined
    this.onDecision?.(decision)
    if (decision === 'segmented') { this.segment(); return }
    const rest = newPiece(this.firstSize, this.size)
    rest.state = 'taken'
    this.pieces.push(rest)
    void this.guarded(async () => { await this.fetchPiece(rest) })
  }

  /** The rest in pieces: K-1 for the K-1 workers that start now; a large blob has more (≤ maxPiece), which whoever is free takes, the first answer's worker too. */
  private segment (): void {
    const rest = this.size - this.firstSize
    const piece = Math.max(1, Math.min(this.maxPiece, Math.ceil(rest / Math.max(1, this.segments - 1))))
    for (let start = this.firstSize; start < this.size; start += piece) this.pieces.push(newPiece(start, Math.min(this.size, start + piece)))
    for (let w = 1; w < Math.min(this.segments, this.pieces.length); w++) void this.work(true)
  }

  override _read (): void {
    this.wanted = true
    this.drain()
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    this.abort.abort(err ?? new Error('segmented body destroyed'))
    for (const p of this.pieces) {
      p.stream?.destroy()
      p.chunks = []
      p.held = 0
      if (p.slot) { p.slot = false; this.slots.release() }
    }
    for (const wake of this.readerMoved.splice(0)) wake()
    callback(err)
  }

  /** The first answer is piece 0; then its worker goes on with range requests, slotless. */
  private async fetchFirst (first: Readable): Promise<void> {
    const p = this.pieces[0]
    try {
      await this.feed(p, first)
      if (p.received < p.end) throw short(p.received, this.size)
      this.complete(p)
    } catch (err) {
      if (!this.abort.signal.aborted) this.destroy(err as Error)
      return
    }
    await this.work(false)
  }

  /** Takes free pieces within the window and fetches them until none is left. */
  private async work (withSlot: boolean): Promise<void> {
    await this.guarded(async () => {
      for (;;) {
        const i = await this.nextFree()
        if (i === undefined) return
        if (withSlot) {
          await this.slots.acquire(this.abort.signal)
          if (this.destroyed || this.pieces[i].state !== 'free') { this.slots.release(); continue }
        }
        const p = this.pieces[i]
        p.state = 'taken'
        p.slot = withSlot
        await this.fetchPiece(p)
      }
    })
  }

  /** Runs a worker; its failure is the body's (unless the body was destroyed first). */
  private async guarded (worker: () => Promise<void>): Promise<void> {
    try {
      await worker()
    } catch (err) {
      if (!this.abort.signal.aborted) this.destroy(err as Error)
    }
  }

  /** The lowest free piece once it is within `segments` of the reader's; undefined: none is free. */
  private async nextFree (): Promise<number | undefined> {
    for (;;) {
      if (this.abort.signal.aborted) throw this.abort.signal.reason
      while (this.freeFrom < this.pieces.length && this.pieces[this.freeFrom].state !== 'free') this.freeFrom++
      if (this.freeFrom >= this.pieces.length) return undefined
      if (this.freeFrom < this.reading + this.segments) return this.freeFrom
      await new Promise<void>(resolve => { this.readerMoved.push(resolve) })
    }
  }

  /** Fetches what `p` still misses, asking again after a failure (see the header). */
  private async fetchPiece (p: Piece): Promise<void> {
    for (let tries = 1; ; tries++) {
      const from = p.start + p.received
      try {
        const answer = await this.fetchRange(from, p.end - 1, this.abort.signal)
        const answered = headerValue(answer.headers, 'content-range')
        const got = parseAnsweredRange(answered)
        if (answer.status !== 206 || got?.start !== from || got.end !== p.end - 1 || got.size !== this.size) {
          answer.body.destroy()
          // A 5xx is the upstream's trouble and may pass; any other answer is not the bytes asked for.
          const code = answer.status >= 500 ? 'ERR_UPSTREAM_STATUS' : 'ERR_UPSTREAM_RANGE'
          throw new ProxyError(502, code, `upstream answered bytes=${from}-${p.end - 1} with ${answer.status} ${JSON.stringify(answered ?? '')}`)
        }
        await this.feed(p, answer.body)
      } catch (err) {
        if (this.abort.signal.aborted || tries >= PIECE_TRIES || (err as ProxyError).code === 'ERR_UPSTREAM_RANGE') throw err
      }
      if (p.start + p.received >= p.end) break
      if (tries >= PIECE_TRIES) throw short(p.start + p.received, this.size)
    }
    this.complete(p)
  }

  /** Reads one range answer into `p`; resolves at its end (short or not), rejects on its error. */
  private async feed (p: Piece, body: Readable): Promise<void> {
    p.stream = body
    p.flowing = true
    this.streaming.add(p)
    try {
      await new Promise<void>((resolve, reject) => {
        body.on('data', (chunk: Buffer) => {
          if (p.start + p.received + chunk.length > p.end) { body.destroy(); reject(tooLong(this.size)); return }
          this.accept(p, chunk)
        })
        body.once('end', resolve)
        body.once('error', reject)
        body.once('close', () => { reject(short(p.start + p.received, this.size)) })
        this.updateFlow()
      })
    } finally {
      p.stream = undefined
      this.streaming.delete(p)
    }
  }

  private accept (p: Piece, chunk: Buffer): void {
    if (chunk.length === 0) return
    p.chunks.push(chunk)
    p.held += chunk.length
    p.received += chunk.length
    if (this.probe !== undefined && p === this.pieces[0]) {
      this.probe.received(chunk.length)
      if (p.received >= this.decideAt) this.decide()
    }
    if (p === this.pieces[this.reading]) this.drain()
    else if (p.held >= this.maxPiece) this.setFlow(p, false)
  }

  private complete (p: Piece): void {
    p.state = 'done'
    p.stream = undefined
    this.drain()
  }

  /** Hands the reader what it may take, in order; moves to the next piece at a piece's end. */
  private drain (): void {
    if (this.destroyed) return
    for (;;) {
      const p = this.pieces[this.reading]
      if (p === undefined) {
        if (this.wanted) { this.wanted = false; this.push(null) }
        return
      }
      while (p.chunks.length > 0 && this.wanted) {
        const chunk = p.chunks.shift() as Buffer
        p.held -= chunk.length
        this.wanted = this.push(chunk)
      }
      if (p.chunks.length > 0 || p.state !== 'done') break
      if (p.slot) { p.slot = false; this.slots.release() }
      this.reading++
      for (const wake of this.readerMoved.splice(0)) wake()
    }
    this.updateFlow()
  }

  /**
   * Backpressure: the piece being read flows while the reader keeps up; a piece ahead until it
   * holds `maxPiece` bytes unread (a range of 4 MiB never reaches that; the single rest does).
   */
  private updateFlow (): void {
    const reading = this.pieces[this.reading]
    for (const p of this.streaming) this.setFlow(p, p === reading ? p.held === 0 : p.held < this.maxPiece)
  }

  private setFlow (p: Piece, flowing: boolean): void {
    if (p.stream === undefined || p.flowing === flowing) return
    p.flowing = flowing
    // The first answer's pauses are the reader's doing, not the link's: the rate leaves them out.
    const probe = p === this.pieces[0] ? this.probe : undefined
    if (flowing) { probe?.resume(); p.stream.resume() } else { probe?.pause(); p.stream.pause() }
  }
}

function newPiece (start: number, end: number): Piece {
  return { start, end, state: 'free', chunks: [], held: 0, received: 0, flowing: false, slot: false }
}

function short (at: number, size: number): ProxyError {
  return new ProxyError(502, 'ERR_UPSTREAM_SHORT', `upstream body ended at byte ${at} of ${size}`)
}

function tooLong (size: number): ProxyError {
  return new ProxyError(502, 'ERR_UPSTREAM_RANGE', `upstream sent more than the ${size} bytes it announced`)
}
