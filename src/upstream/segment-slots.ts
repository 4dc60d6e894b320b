/**
 * The process-wide budget of extra upstream connections that segmented blob fetches may open
 * (segmented-body.ts), shared by every fill of both doors, prefetch included.
 *
 * Contract: `acquire` resolves once a slot is free (first come, first served) and rejects with the
 * signal's reason when the signal aborts first; every resolved `acquire` is paired with one
 * `release`. A slot stands for one range request in flight *and* for the piece it fetched until
 * the reader has taken it, so slots × piece size bounds the bytes buffered ahead of readers.
 */
/**
 * Extra connections for all segmented downloads together: 16 × 4 MiB pieces bounds the bytes held
 * ahead of readers at 64 MiB (issue 20's RSS target is 200 MB), and 16 extra connections on top of
 * one per fill (PREFETCH_CONCURRENCY 8 + clients) quadruples 8 capped connections' throughput.
 */
export const SEGMENT_SLOTS = 16

export class SegmentSlots {
  private free: number
  private readonly waiting: Array<() => void> = []

  constructor (readonly size: number) {
    this.free = size
  }

  async acquire (signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw signal.reason
    if (this.free > 0) { this.free--; return }
    await new Promise<void>((resolve, reject) => {
      const grant = (): void => { signal.removeEventListener('abort', onAbort); resolve() }
      const onAbort = (): void => {
        const i = this.waiting.indexOf(grant)
        if (i >= 0) this.waiting.splice(i, 1)
        reject(signal.reason)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.waiting.push(grant)
    })
  }

  release (): void {
    const next = this.waiting.shift()
    if (next !== undefined) next()
    else this.free++
  }

  /** Slots in use (for tests and metrics). */
  get inUse (): number {
    return this.size - this.free
  }
}
