// In-memory range sources for SegmentedBody tests: the first answer and every range request served
// from a buffer in slices, on demand (a paused body stops its source), with fault injection per
// piece, counts of what was asked and handed out, and an optional hook per slice (a test's clock).
import { Readable } from 'node:stream'
import { setImmediate as tick } from 'node:timers/promises'
import type { RangeFetch } from '../../src/upstream/segmented-body.js'
import type { SegmentSlots } from '../../src/upstream/segment-slots.js'
import type { UpstreamResponse } from '../../src/upstream/upstream-client.js'

/** What a failing piece request does. */
export type Fault = 'reset' | 'status-500' | 'status-200' | 'wrong-range' | 'short' | 'extra-byte'

export interface Source {
  fetchRange: RangeFetch
  first: Readable
  /** Range requests asked, in order. */
  asked: Array<[number, number]>
  /** Bytes the sources have handed out so far. */
  delivered: () => number
  /** Distinct pieces asked for. */
  pieces: () => number
}

/** `data` served in `chunk`-byte slices, on demand (a paused reader stops the source). */
export function sliced (data: Buffer, chunk: number, count: (n: number) => void, opts: { stopAt?: number, extra?: boolean, reset?: boolean, beforeSlice?: (n: number) => void } = {}): Readable {
  const end = opts.stopAt ?? data.length
  async function * gen (): AsyncGenerator<Buffer> {
    for (let off = 0; off < end; off += chunk) {
      await tick()
      const c = data.subarray(off, Math.min(end, off + chunk))
      opts.beforeSlice?.(c.length)
      count(c.length)
      yield c
    }
    if (opts.reset === true) throw Object.assign(new Error('socket reset'), { code: 'ECONNRESET' })
    if (opts.extra === true) { count(1); yield Buffer.from([0]) }
  }
  return Readable.from(gen(), { objectMode: false })
}

export function answer (status: number, body: Readable, contentRange?: string): UpstreamResponse {
  return { status, headers: contentRange !== undefined ? { 'content-range': contentRange } : {}, body, url: 'https://up.test/v2/x/blobs/d', ms: 0 }
}

/**
 * Range sources over `data`, the first answer carrying its first `firstSize` bytes (`first.beforeSlice`
 * sees each of its slices before it is handed out); the `failing`-th piece (0-based, in the order
 * first asked) misbehaves `times` times.
 */
export function sources (data: Buffer, chunk: number, firstSize: number, failing?: { index: number, fault: Fault, times: number }, first: { beforeSlice?: (n: number) => void } = {}): Source {
  let delivered = 0
  const count = (n: number): void => { delivered += n }
  const asked: Array<[number, number]> = []
  let failuresLeft = failing?.times ?? 0
  // Pieces by their last byte, in the order first asked (a retry asks for the rest: same end).
  const pieces = new Map<number, number>()
  const fetchRange: RangeFetch = async (start, end) => {
    asked.push([start, end])
    if (!pieces.has(end)) pieces.set(end, pieces.size)
    const pieceIndex = pieces.get(end)
    await tick()
    const cr = `bytes ${start}-${end}/${data.length}`
    const part = data.subarray(start, end + 1)
    if (failing !== undefined && pieceIndex === failing.index && failuresLeft > 0) {
      failuresLeft--
      switch (failing.fault) {
        case 'reset': return answer(206, sliced(part, chunk, count, { stopAt: Math.floor(part.length / 2), reset: true }), cr)
        case 'status-500': return answer(500, Readable.from([Buffer.from('oops')]))
        case 'status-200': return answer(200, sliced(data, chunk, count))
        case 'wrong-range': return answer(206, sliced(data.subarray(start + 1, end + 2), chunk, count), `bytes ${start + 1}-${end + 1}/${data.length}`)
        case 'short': return answer(206, sliced(part, chunk, count, { stopAt: part.length - 1 }), cr)
        case 'extra-byte': return answer(206, sliced(part, chunk, count, { extra: true }), cr)
      }
    }
    return answer(206, sliced(part, chunk, count), cr)
  }
  return { fetchRange, first: sliced(data.subarray(0, firstSize), chunk, count, first), asked, delivered: () => delivered, pieces: () => pieces.size }
}

/** Reads `body` whole (slowly when `pace` > 0); resolves with what came and the error, if any. */
export async function readAll (body: Readable, pace = 0, onChunk?: (consumed: number) => void): Promise<{ bytes: Buffer, error?: Error }> {
  const got: Buffer[] = []
  let n = 0
  try {
    for await (const c of body) {
      got.push(c as Buffer)
      n += (c as Buffer).length
      onChunk?.(n)
      for (let i = 0; i < pace; i++) await tick()
    }
    return { bytes: Buffer.concat(got) }
  } catch (err) {
    return { bytes: Buffer.concat(got), error: err as Error }
  }
}

export async function settled (slots: SegmentSlots): Promise<void> {
  // Workers give their slots back on their way out; a few turns of the loop let them.
  for (let i = 0; i < 20 && slots.inUse > 0; i++) await tick()
}
