/**
 * The bytes of a fill that could not go to the staging file (the cache disk filled up mid-blob),
 * held in memory only until every reader has passed them.
 *
 *   upstream ─► FillSink ─► FillWindow [start ……… end) ─► TailReader × N (read at their own pos)
 *                               ▲ drop(min pos of readers)
 *                               └─ append() waits while the window is over its bound: that wait is
 *                                  what pauses the upstream (pipeline backpressure)
 *
 * Memory stays bounded by `maxBytes` (plus one append's worth): the fill moves at the pace of its
 * slowest reader, as a plain proxy would.
 */
export class FillWindow {
  /** Absolute offset (in the blob) of the first byte still held. */
  start: number
  /** Absolute offset just past the last byte appended. */
  end: number
  private chunks: Buffer[] = []
  private waiter: (() => void) | undefined
  private released = false

  constructor (start: number, private readonly maxBytes: number) {
    this.start = start
    this.end = start
  }

  get held (): number {
    return this.end - this.start
  }

  /** Appends `buffers`; resolves once the window is back within its bound (or released). */
  async append (buffers: Buffer[]): Promise<void> {
    for (const b of buffers) {
      if (b.length === 0) continue
      this.chunks.push(b)
      this.end += b.length
    }
    while (this.held > this.maxBytes && !this.released) await new Promise<void>(resolve => { this.waiter = resolve })
  }

  /**
   * Up to `max` bytes at absolute offset `pos` (within one chunk: callers loop); an empty buffer
   * when `pos` is at `end`; undefined when those bytes were already dropped.
   */
  read (pos: number, max: number): Buffer | undefined {
    if (pos < this.start) return undefined
    let offset = this.start
    for (const c of this.chunks) {
      if (pos < offset + c.length) {
        const from = pos - offset
        return c.subarray(from, from + Math.min(max, c.length - from))
      }
      offset += c.length
    }
    return Buffer.alloc(0)
  }

  /** Forgets whole chunks below `pos` (no reader needs them any more) and wakes a waiting append. */
  drop (pos: number): void {
    while (this.chunks.length > 0 && this.start + this.chunks[0].length <= pos) {
      this.start += (this.chunks.shift() as Buffer).length
    }
    if (this.chunks.length === 0 && pos > this.start) this.start = Math.min(pos, this.end)
    if (this.held <= this.maxBytes) this.wake()
  }

  /**
   * No append waits any more (the fill settled or its writer was destroyed). The bytes stay: readers
   * of a verified fill still finish from them, dropping them as they pass.
   */
  release (): void {
    this.released = true
    this.wake()
  }

  private wake (): void {
    const w = this.waiter
    this.waiter = undefined
    w?.()
  }
}
