/**
 * The last stage of a fill's pipeline (blob-fill.ts): hashes and counts the upstream body, and hands
 * it to the fill's `store` (the staging file, or the in-memory window once the disk is full) in
 * batches. Fails early on too many bytes or an idle upstream.
 *
 *   upstream body ──chunks (≤ 16 KiB TLS records)──► hash + count ──► pending ──batch──► store
 *                                                                      (≥ WRITE_BATCH, or FLUSH_MS
 *                                                                       after its first byte, or the end)
 *
 * Why one stage and batches (issue 20, CPU per byte): a body paced by the network arrives one TLS
 * record at a time, and storing each record as it came cost a positional write, a 'progress' event
 * and a wake-up of every reader per 16 KiB. A hashing Transform in front of a Writable also made
 * every chunk pass two streams and held another 1 MiB per fill. Batching delays the bytes readers
 * can see by at most FLUSH_MS.
 */
import { createHash, type Hash } from 'node:crypto'
import { Writable } from 'node:stream'
import type { Digest } from '../oci/digest.js'

export class BlobFillError extends Error {
  readonly code: string
  constructor (code: string, message: string, opts: { cause?: unknown } = {}) {
    super(message, { cause: opts.cause })
    this.name = 'BlobFillError'
    this.code = code
  }
}

/** Bytes gathered before they are stored (the readers' TailReader batch is the same size). */
const WRITE_BATCH = 256 << 10
/** How long bytes may wait in a batch that is not full: readers see them this much later at most. */
const FLUSH_MS = 20

export class FillSink extends Writable {
  /** Bytes received so far. */
  length = 0
  private readonly hash: Hash
  private readonly idle: NodeJS.Timeout | undefined
  private flushTimer: NodeJS.Timeout | undefined
  private pending: Buffer[] = []
  private pendingBytes = 0
  /** Stores run one after the other, in order. */
  private storing: Promise<void> = Promise.resolve()

  constructor (private readonly digest: Digest, private readonly expectedSize: number | undefined, idleMs: number,
    private readonly store: (buffers: Buffer[]) => Promise<void>, private readonly onDestroy: () => void) {
    super({ highWaterMark: 1 << 20 })
    this.hash = createHash(digest.algorithm)
    if (idleMs > 0) {
      // One timer pushed back per chunk (refresh), not a new timer per chunk.
      this.idle = setTimeout(() => {
        this.destroy(new BlobFillError('ERR_UPSTREAM_TIMEOUT', `blob ${this.digest.value}: upstream sent nothing for ${idleMs} ms`))
      }, idleMs)
      this.idle.unref()
    }
  }

  /** The body's digest (hex); once, after the pipeline ended. */
  hex (): string {
    return this.hash.digest('hex')
  }

  override _writev (chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    this.idle?.refresh()
    for (const { chunk } of chunks) {
      this.length += chunk.length
      if (this.expectedSize !== undefined && this.length > this.expectedSize) {
        cb(new BlobFillError('ERR_BLOB_TOO_LONG', `blob ${this.digest.value}: upstream sent more than the announced ${this.expectedSize} bytes`))
        return
      }
      this.hash.update(chunk)
      this.pending.push(chunk)
      this.pendingBytes += chunk.length
    }
    if (this.pendingBytes < WRITE_BATCH) {
      this.flushTimer ??= setTimeout(() => { this.flush().catch(err => this.destroy(err as Error)) }, FLUSH_MS)
      cb()
      return
    }
    // A full batch: the next chunks wait in the stream (backpressure) until it is stored.
    this.flush().then(() => { this.idle?.refresh(); cb() }, cb)
  }

  override _final (cb: (err?: Error | null) => void): void {
    clearTimeout(this.idle)
    this.flush().then(() => cb(), cb)
  }

  override _destroy (err: Error | null, cb: (err: Error | null) => void): void {
    clearTimeout(this.idle)
    clearTimeout(this.flushTimer)
    // A store waiting for readers to drain the window must not outlive the pipeline.
    this.onDestroy()
    cb(err)
  }

  /** Stores what is pending, after the stores already under way. */
  private async flush (): Promise<void> {
    clearTimeout(this.flushTimer)
    this.flushTimer = undefined
    const batch = this.pending
    this.pending = []
    this.pendingBytes = 0
    this.storing = this.storing.then(async () => { if (batch.length > 0) await this.store(batch) })
    await this.storing
  }
}
