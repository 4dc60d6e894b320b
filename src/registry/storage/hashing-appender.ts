/**
 * The write end of an upload: hashes each chunk as it passes and appends the bytes to the session's
 * data file in batches of at least `batchBytes`.
 *
 *   request body (64 KiB socket reads) ──► hash.update ──► copy into buffer A ──► full: write A,
 *                                                          fill B meanwhile, then write B, fill A …
 *
 * Why batch: a fs.WriteStream writes whatever is buffered the moment its previous write returns,
 * which on a page-cache-fast disk is nearly every 64 KiB chunk: ~16k writev calls and thread-pool
 * round trips per GiB, 0.46 s/GiB of main-thread time in the profile (plus the wake-ups). Batching
 * makes it ~1k. Why copy rather than keep the chunks until a batch is full: a chunk that outlives
 * a scavenge is promoted, and its external memory is then only freed by a mark-compact; enough of
 * those and V8 runs mark-compacts for "external memory pressure" every few MiB. The two recycled
 * buffers allocate nothing per chunk; the copy costs ~0.1 s/GiB. Hashing here rather than in a
 * Transform or async-generator stage in front saves a stage and its per-chunk promise turns.
 *
 * Memory is bounded: the two buffers plus the Writable's high-water mark (chunks that arrive while
 * both buffers are busy); beyond that the body is paused (backpressure).
 *
 * On destroy (the client went away), bytes already taken are still written, in order, before the
 * stream closes: the session keeps everything that was hashed, so the client can resume from the
 * data file's size. The caller owns the file handle and closes it after the stream has closed.
 */
import type { Hash } from 'node:crypto'
import type { FileHandle } from 'node:fs/promises'
import { Writable } from 'node:stream'

export class HashingAppender extends Writable {
  /** Bytes accepted so far (hashed, and written or about to be). */
  written = 0
  private readonly buffers: Array<Buffer | undefined> = [undefined, undefined]
  private current = 0
  private filled = 0
  /** The write of the other buffer, if one is in flight; never rejects (see `failure`). */
  private writing: Promise<void> | undefined
  private failure: Error | undefined

  constructor (private readonly file: FileHandle, private readonly hash: Hash | undefined, private readonly batchBytes: number) {
    super({ highWaterMark: batchBytes })
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.take(chunk).then(() => callback(), callback)
  }

  override _final (callback: (err?: Error | null) => void): void {
    this.drain().then(() => callback(), callback)
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    // Whatever was taken is written, in order, unless a write already failed (a gap would follow).
    const settle = async (): Promise<void> => {
      while (this.writing !== undefined) await this.writing
      if (this.failure === undefined) await this.drain()
    }
    settle().then(() => callback(err), (writeErr: Error) => callback(err ?? writeErr))
  }

  private async take (chunk: Buffer): Promise<void> {
    this.hash?.update(chunk)
    this.written += chunk.length
    for (let offset = 0; offset < chunk.length;) {
      const target = this.buffers[this.current] ??= Buffer.allocUnsafeSlow(this.batchBytes)
      const n = chunk.copy(target, this.filled, offset)
      offset += n
      this.filled += n
      if (this.filled === target.length) await this.rotate()
    }
  }

  /** Starts writing the current buffer, then fills the other one once its own write is done. */
  private async rotate (): Promise<void> {
    await this.settled()
    const full = this.buffers[this.current]
    if (full === undefined || this.filled === 0) return
    const writing: Promise<void> = writeAll(this.file, full.subarray(0, this.filled)).then(
      () => { if (this.writing === writing) this.writing = undefined },
      (err: Error) => { this.failure = err; if (this.writing === writing) this.writing = undefined })
    this.writing = writing
    this.current ^= 1
    this.filled = 0
  }

  /** Writes what is buffered and waits for it. */
  private async drain (): Promise<void> {
    await this.rotate()
    await this.settled()
  }

  /** Waits until no write is in flight (a destroy may race a chunk's rotate for the next one). */
  private async settled (): Promise<void> {
    while (this.writing !== undefined) await this.writing
    if (this.failure !== undefined) throw this.failure
  }
}

/** Writes until every byte is written (a regular file may take fewer bytes than asked). */
async function writeAll (file: FileHandle, bytes: Buffer): Promise<void> {
  for (let offset = 0; offset < bytes.length;) {
    const { bytesWritten } = await file.write(bytes, offset, bytes.length - offset)
    offset += bytesWritten
  }
}
