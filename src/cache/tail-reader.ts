/**
 * A reader of a fill (blob-fill.ts): bytes [start, end] (inclusive; end defaults to the last byte)
 * as they arrive. Bytes on disk are read from the staging file through its own fd; bytes the disk
 * had no room for come from the fill's in-memory window (fill-window.ts).
 *
 * Ends cleanly only once the fill is verified and settled (committed, or 'uncached' when the disk
 * was full); destroyed with the fill's error if it fails. Memory stays bounded by the stream's
 * highWaterMark whatever the client's speed.
 *
 * Reads go through the fill's own descriptor (BlobFill.acquire), never a path: a rename or an
 * eviction cannot take the bytes away. A reader given a share (`given`, taken by the blob store's
 * openOrFill) reads through it; one that takes its own fails with ERR_FILL_GONE before its first
 * byte if the fill already settled and closed its descriptor: look the digest up again.
 *
 * A consumer that knows when it is done with a chunk (its write callback) hands it back with
 * `recycle`, and the reader reads into it again: a fresh 1 MiB buffer per read is external memory
 * that only a GC frees, which made V8 run mark-compacts for "external memory pressure" and kept
 * ~1 MiB of garbage per read alive in RSS (the same as util/file-sender.ts measured for cached
 * files). A consumer that never recycles gets fresh buffers, as any Readable's.
 */
import { Readable } from 'node:stream'
import { BlobFillError, type BlobFill, type FillHandle, type FillReader } from './blob-fill.js'

const READ_CHUNK = 1 << 20
/** Bytes a reader following a fill waits for before it reads (see `pump`). */
const TAIL_BATCH = 256 << 10
/** Read buffers a reader recycles (see `recycle`): one being read, one queued, one being written. */
const SPARES = 3
// A reader's first read is small: in a herd, a new joiner's first bytes would otherwise queue behind
// every other reader's 1 MiB reads on libuv's 4 file-system threads (32 clients: first byte 5x later).
const FIRST_READ = 64 << 10

export class TailReader extends Readable implements FillReader {
  private handle: FillHandle | undefined
  private pos: number
  private started = false
  private waiting = false
  /** The final byte, taken out of the window before the verdict so it does not pin the window. */
  private held: Buffer | undefined
  /** The read buffers this reader may reuse (at most SPARES), and those free to read into now. */
  private readonly owned = new Set<ArrayBuffer>()
  private readonly spare: Buffer[] = []

  /** `given`: a share of the fill's descriptor already taken; the reader owns (releases) it. */
  constructor (private readonly fill: BlobFill, start = 0, private readonly end?: number, private readonly given?: FillHandle) {
    super({ highWaterMark: READ_CHUNK })
    this.pos = start
    fill.attach(this)
  }

  /** The first byte this reader still needs (Infinity once it has everything it will serve). */
  get need (): number {
    return this.pos < this.last ? this.pos : Infinity
  }

  private get last (): number {
    return this.end !== undefined ? this.end + 1 : this.fill.expectedSize ?? Infinity
  }

  override _construct (cb: (err?: Error | null) => void): void {
    const acquiring = this.given !== undefined ? Promise.resolve(this.given) : this.fill.acquire()
    acquiring.then(handle => {
      if (handle === undefined) { cb(new BlobFillError('ERR_FILL_GONE', `blob ${this.fill.digest.value}: the download settled before this reader started`)); return }
      // Destroyed while waiting (the client left): give the share straight back.
      if (this.destroyed) handle.release()
      else this.handle = handle
      cb()
    }, cb)
  }

  override _read (size: number): void {
    void this.pump(size)
  }

  private async pump (size: number): Promise<void> {
    const fill = this.fill
    if (fill.state === 'failed') { this.destroy(fill.error); return }
    const verified = fill.verified
    const last = this.last
    const available = fill.available
    let limit = Math.min(available, last)
    // The final byte waits for the verdict: with a Content-Length, a client's HTTP parser calls the
    // body complete on its last byte, so a wrong body must never get that far.
    if (!verified && limit >= last) limit = last - 1
    // Following a download paced by the network, wait for a batch instead of reading each upstream
    // chunk (a 16 KiB TLS record) as it lands: a file read, a push and a socket write per record
    // made a paced cold pull cost ~40% more CPU than an unthrottled one (issue 20). Not for the
    // first read (the first byte goes out at once) nor for the end of the body.
    const batching = !verified && this.started && limit < last - 1 && limit - this.pos < TAIL_BATCH
    if (this.pos >= limit || batching) {
      if (verified && (this.pos >= last || this.pos >= available)) {
        if (this.held !== undefined) this.push(this.held)
        this.held = undefined
        this.push(null)
        return
      }
      if (!verified && this.pos === last - 1 && available >= last && this.pos >= fill.written) this.holdLastByte()
      if (this.waiting) return
      this.waiting = true
      fill.once('progress', () => { this.waiting = false; if (!this.destroyed) void this.pump(size) })
      return
    }
    const want = Math.min(this.started ? Math.max(size, READ_CHUNK) : FIRST_READ, limit - this.pos)
    this.started = true
    try {
      if (this.pos < fill.written) await this.readFile(Math.min(want, fill.written - this.pos))
      else this.readWindow(want)
    } catch (err) {
      this.destroy(err as Error)
    }
  }

  /**
   * The consumer is done with `chunk`, one this reader pushed (written out, nothing holds it): its
   * memory may be read into again. Chunks the reader does not own (the window's) are ignored.
   */
  recycle (chunk: Buffer): void {
    const memory = chunk.buffer as ArrayBuffer
    if (this.owned.has(memory) && !this.destroyed) this.spare.push(Buffer.from(memory))
  }

  private readBuffer (want: number): Buffer {
    const spare = this.spare.pop()
    if (spare !== undefined) return spare
    // A small blob (or its small rest) is not worth a 1 MiB buffer.
    if (this.owned.size >= SPARES || this.last - this.pos <= FIRST_READ) return Buffer.allocUnsafeSlow(want)
    const buf = Buffer.allocUnsafeSlow(READ_CHUNK)
    this.owned.add(buf.buffer as ArrayBuffer)
    return buf
  }

  private async readFile (want: number): Promise<void> {
    const buf = this.readBuffer(want)
    const { bytesRead } = await (this.handle as FillHandle).fh.read(buf, 0, want, this.pos)
    if (this.destroyed) return
    if (bytesRead === 0) throw new Error(`staging file of ${this.fill.digest.value} shorter than reported`)
    this.pos += bytesRead
    this.push(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead))
  }

  private readWindow (want: number): void {
    const chunk = this.fill.readWindow(this.pos, want)
    if (chunk === undefined || chunk.length === 0) {
      // Dropped before we read it: this reader joined after the window moved on.
      throw new BlobFillError('ERR_CACHE_DISK_FULL', `blob ${this.fill.digest.value}: the cache disk is full and bytes at ${this.pos} are gone from memory`)
    }
    this.pos += chunk.length
    this.fill.readerMoved()
    this.push(chunk)
  }

  private holdLastByte (): void {
    const b = this.fill.readWindow(this.pos, 1)
    if (b === undefined || b.length !== 1) return
    this.held = Buffer.from(b)
    this.pos += 1
    this.fill.readerMoved()
  }

  override _destroy (err: Error | null, cb: (err: Error | null) => void): void {
    this.fill.detach(this)
    this.handle?.release()
    this.handle = undefined
    this.spare.length = 0
    cb(err)
  }
}
