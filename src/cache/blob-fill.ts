/**
 * One in-flight blob download into the cache, and the readers that follow it while it grows.
 *
 *   upstream body ──► Digester (sha256/512 + length, idle timeout) ──► StagingWriter ──► staging file
 *        (one pipeline: the only place that owns errors)                  │ 'progress' (bytes on disk)
 *                                                                         ▼
 *                                       TailReader × N (the first client and every joiner alike)
 *                                       read [pos, written) from their own fd, at their own pace
 *
 * Clients are readers of the file, never of the upstream stream: a slow client does not slow the
 * fill nor make the process buffer (the page cache holds the bytes), and a client that goes away
 * does not stop the fill (the cache owns the download).
 *
 * End of a fill, decided once by the pipeline:
 * - digest and length match → `commit` (cache-store.ts) renames the staging file into cacache's
 *   content path and indexes it; state 'committed'; readers end cleanly once they reached `size`.
 *   Readers keep their fd across the rename (POSIX), so nothing is re-opened.
 * - anything else (upstream error, truncation, too many bytes, wrong digest, idle timeout) →
 *   staging file removed, state 'failed'; every reader is destroyed with the error, so clients see
 *   an aborted connection, never a clean end of a wrong body. Nothing is indexed. Readers hold
 *   back the last byte of what they serve until the commit, because with a Content-Length the
 *   client would take its last byte as a clean end.
 */
import { createHash, type Hash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { open, unlink, type FileHandle } from 'node:fs/promises'
import { Readable, Transform, Writable, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ParsedDigest } from './cache-paths.js'

export type FillState = 'filling' | 'committed' | 'failed'

export class BlobFillError extends Error {
  readonly code: string
  constructor (code: string, message: string, opts: { cause?: unknown } = {}) {
    super(message, { cause: opts.cause })
    this.name = 'BlobFillError'
    this.code = code
  }
}

export interface BlobFillOptions {
  digest: ParsedDigest
  /** The upstream body; the fill owns it from now on (consumes or destroys it). */
  body: Readable
  stagingPath: string
  /** Content-Length announced by the upstream, when it announced one. */
  expectedSize?: number
  mediaType?: string
  /** Abort when the upstream sends nothing for this long (0: never). */
  idleTimeoutMs?: number
  /** Makes the verified staging file visible in the cache; returns the committed path. */
  commit: (fill: BlobFill) => Promise<string>
  /** Called once the fill settled either way (releases the reservation, unregisters it). */
  onSettled?: (fill: BlobFill) => void
}

/**
 * An in-flight download. Events: 'progress' (more bytes on disk, or the state changed).
 * Contract: `written` only grows; `state` leaves 'filling' exactly once; `done` resolves on commit
 * and rejects with the failure (it never rejects unhandled).
 */
export class BlobFill extends EventEmitter {
  readonly digest: ParsedDigest
  readonly expectedSize: number | undefined
  readonly mediaType: string | undefined
  /** Bytes written to the staging file so far (readable by tail readers). */
  written = 0
  state: FillState = 'filling'
  error: Error | undefined
  /** The staging path while filling; the content path once committed. */
  path: string
  readonly done: Promise<void>
  private readonly opened: Promise<FileHandle>

  constructor (private readonly opts: BlobFillOptions) {
    super()
    this.setMaxListeners(0)
    this.digest = opts.digest
    this.expectedSize = opts.expectedSize
    this.mediaType = opts.mediaType
    this.path = opts.stagingPath
    // The body may fail before the pipeline below is attached (the staging file opens first);
    // without a listener that error would be an uncaught exception instead of a failed fill.
    opts.body.on('error', () => {})
    // 'wx': a staging file left over by a fill of this digest in this process would be a bug.
    this.opened = open(opts.stagingPath, 'wx')
    this.opened.catch(() => {})
    this.done = this.run()
    this.done.catch(() => {})
  }

  /** Final size: known once committed (or from the announced length). */
  get size (): number | undefined {
    return this.state === 'committed' ? this.written : this.expectedSize
  }

  /** Resolves once the staging file exists, so a reader can open it (rejects if it never will). */
  async ready (): Promise<void> {
    await this.opened
  }

  /** Stops the download (the fill fails with `err`); no-op once settled. */
  abort (err: Error): void {
    if (this.state === 'filling' && !this.opts.body.destroyed) this.opts.body.destroy(err)
  }

  private async run (): Promise<void> {
    const { digest, body, expectedSize } = this.opts
    const digester = new Digester(digest, expectedSize, this.opts.idleTimeoutMs ?? 0)
    let fh: FileHandle | undefined
    let created = false
    try {
      fh = await this.opened
      created = true
      await pipeline(body, digester, new StagingWriter(fh, n => { this.written += n; this.emit('progress') }))
      await fh.close()
      fh = undefined
      if (expectedSize !== undefined && digester.length !== expectedSize) {
        throw new BlobFillError('ERR_BLOB_TRUNCATED', `blob ${digest.digest}: upstream sent ${digester.length} of ${expectedSize} bytes`)
      }
      const actual = digester.hex()
      if (actual !== digest.hex) {
        throw new BlobFillError('ERR_BLOB_DIGEST_MISMATCH', `blob ${digest.digest}: upstream body hashes to ${digest.algorithm}:${actual}`)
      }
      this.path = await this.opts.commit(this)
      this.state = 'committed'
    } catch (err) {
      if (!body.destroyed) body.destroy()
      await fh?.close().catch(() => {})
      // Only our own file: an open that failed (EEXIST) must not delete somebody else's.
      if (created) await unlink(this.opts.stagingPath).catch(() => {})
      this.state = 'failed'
      this.error = err instanceof BlobFillError ? err : new BlobFillError('ERR_BLOB_FILL', `blob ${digest.digest}: ${(err as Error)?.message ?? String(err)}`, { cause: err })
      throw this.error
    } finally {
      this.emit('progress')
      this.opts.onSettled?.(this)
    }
  }
}

/** Hashes and counts what passes; fails early on too many bytes or an idle upstream. */
class Digester extends Transform {
  length = 0
  private readonly hash: Hash
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly digest: ParsedDigest, private readonly expectedSize: number | undefined, private readonly idleMs: number) {
    super({ highWaterMark: 1 << 20 })
    this.hash = createHash(digest.algorithm)
    this.arm()
  }

  hex (): string {
    return this.hash.digest('hex')
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.arm()
    this.length += chunk.length
    if (this.expectedSize !== undefined && this.length > this.expectedSize) {
      cb(new BlobFillError('ERR_BLOB_TOO_LONG', `blob ${this.digest.digest}: upstream sent more than the announced ${this.expectedSize} bytes`))
      return
    }
    this.hash.update(chunk)
    cb(null, chunk)
  }

  override _flush (cb: TransformCallback): void {
    this.disarm()
    cb()
  }

  override _destroy (err: Error | null, cb: (err: Error | null) => void): void {
    this.disarm()
    cb(err)
  }

  private arm (): void {
    if (this.idleMs <= 0) return
    this.disarm()
    this.timer = setTimeout(() => {
      this.destroy(new BlobFillError('ERR_UPSTREAM_TIMEOUT', `blob ${this.digest.digest}: upstream sent nothing for ${this.idleMs} ms`))
    }, this.idleMs)
    this.timer.unref()
  }

  private disarm (): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }
}

/** Appends to the staging file and reports each write once it is in the file (not before). */
class StagingWriter extends Writable {
  constructor (private readonly fh: FileHandle, private readonly onWritten: (n: number) => void) {
    super({ highWaterMark: 1 << 20 })
  }

  override _writev (chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    this.writeAll(chunks.map(c => c.chunk)).then(() => cb(), cb)
  }

  private async writeAll (buffers: Buffer[]): Promise<void> {
    let pending = buffers
    while (pending.length > 0) {
      const { bytesWritten } = await this.fh.writev(pending)
      this.onWritten(bytesWritten)
      pending = skipBytes(pending, bytesWritten)
    }
  }
}

function skipBytes (buffers: Buffer[], n: number): Buffer[] {
  const out: Buffer[] = []
  for (const b of buffers) {
    if (n >= b.length) { n -= b.length; continue }
    out.push(n > 0 ? b.subarray(n) : b)
    n = 0
  }
  return out
}

const READ_CHUNK = 1 << 20

/**
 * A reader of a fill: bytes [start, end] (inclusive; end defaults to the last byte) as they reach
 * the staging file. Ends cleanly only after the fill committed; destroyed with the fill's error if
 * it fails. Memory stays bounded by the stream's highWaterMark whatever the client's speed.
 */
export class TailReader extends Readable {
  private fh: FileHandle | undefined
  private pos: number
  private waiting = false

  constructor (private readonly fill: BlobFill, start = 0, private readonly end?: number) {
    super({ highWaterMark: READ_CHUNK })
    this.pos = start
  }

  override _construct (cb: (err?: Error | null) => void): void {
    this.openFile().then(fh => { this.fh = fh; cb() }, cb)
  }

  private async openFile (): Promise<FileHandle> {
    await this.fill.ready()
    try {
      return await open(this.fill.path, 'r')
    } catch (err) {
      // The commit may have renamed the file between reading `path` and opening it.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && this.fill.state === 'committed') return await open(this.fill.path, 'r')
      if (this.fill.state === 'failed') throw this.fill.error ?? err
      throw err
    }
  }

  override _read (size: number): void {
    void this.pump(size)
  }

  private async pump (size: number): Promise<void> {
    const fill = this.fill
    if (fill.state === 'failed') { this.destroy(fill.error); return }
    const last = this.end !== undefined ? this.end + 1 : fill.expectedSize ?? Infinity
    let limit = Math.min(fill.written, last)
    // The final byte waits for the verdict: with a Content-Length, a client's HTTP parser calls the
    // body complete on its last byte, so a wrong body must never get that far.
    if (fill.state !== 'committed' && limit >= last) limit = last - 1
    if (this.pos >= limit) {
      if (fill.state === 'committed' && (this.pos >= last || this.pos >= fill.written)) { this.push(null); return }
      if (this.waiting) return
      this.waiting = true
      fill.once('progress', () => { this.waiting = false; if (!this.destroyed) void this.pump(size) })
      return
    }
    const want = Math.min(Math.max(size, READ_CHUNK), limit - this.pos)
    const buf = Buffer.allocUnsafe(want)
    try {
      const { bytesRead } = await (this.fh as FileHandle).read(buf, 0, want, this.pos)
      if (this.destroyed) return
      if (bytesRead === 0) throw new Error(`staging file of ${fill.digest.digest} shorter than reported`)
      this.pos += bytesRead
      this.push(bytesRead === want ? buf : buf.subarray(0, bytesRead))
    } catch (err) {
      this.destroy(err as Error)
    }
  }

  override _destroy (err: Error | null, cb: (err: Error | null) => void): void {
    const fh = this.fh
    this.fh = undefined
    if (fh === undefined) { cb(err); return }
    fh.close().then(() => cb(err), () => cb(err))
  }
}
