/**
 * One in-flight blob download into the cache, and the readers that follow it while it grows.
 *
 *   upstream body ──► FillSink (sha256/512 + length, idle timeout; 256 KiB batches) ──► staging file
 *        (one pipeline: the only place that owns errors)                  │ 'progress' (bytes on disk)
 *                                                                         ▼
 *                                       TailReader × N (the first client and every joiner alike)
 *                                       read [pos, written) from their own fd, at their own pace
 *
 * Clients are readers of the file, never of the upstream stream: a slow client does not slow the
 * fill nor make the process buffer (the page cache holds the bytes), and a client that goes away
 * does not stop the fill (the cache owns the download).
 *
 * Disk full (ENOSPC, EDQUOT, EFBIG) mid-blob, with readers attached: the fill turns into a
 * pass-through instead of failing (rpardini's users saw endless "unexpected EOF" retries there).
 * Writing stops, hashing goes on, and what did not fit goes to a bounded in-memory window
 * (fill-window.ts) that readers drain: the readers already attached, joiners included, get the
 * whole body, at the pace of the slowest of them. The fill is no longer joinable (CacheBlobStore.inflight
 * hides it: a window dropped behind its readers cannot serve a newcomer from byte 0). Verified at the
 * end like any fill, it settles 'uncached': nothing is committed. When the last reader leaves, there
 * is nobody to serve and nothing to keep, so the download stops.
 *
 * Life cycle: one state machine, each transition one synchronous step (state set, 'progress'
 * emitted), so no reader ever sees a transition half done:
 *
 *   filling ──body ended, length and digest match──► committing ──rename + index──► committed
 *      │                                                  └──index write failed──► uncached
 *      │ (disk full with readers: pass-through, see above) ─────────verified──────► uncached
 *      └──upstream error, truncation, too many bytes, wrong digest, idle timeout──► failed
 *
 * Readers never open the staging file by name. They share the fill's own descriptor (opened
 * read-write), counted by `acquire`/release: POSIX keeps an open inode readable across the
 * commit's rename and an eviction's unlink, so no rename, index write or LRU eviction can make a
 * reader lose its bytes (before: a joiner opening the staging path between the commit's rename and
 * the state change met ENOENT and its client got a closed connection without a status line). The
 * descriptor closes when the fill settled and its last reader left; a reader arriving after that
 * gets `undefined` from `acquire` and looks the digest up again (committed file, or a new fill).
 *
 * - committed: readers end cleanly once they reached `size`. If the commit fails after
 *   verification (the index write hit a full disk), the bytes are still verified: 'uncached'.
 * - failed: staging file removed; every reader is destroyed with the error, so clients see an
 *   aborted connection, never a clean end of a wrong body. Nothing is indexed. Readers hold back
 *   the last byte of what they serve until the verdict, because with a Content-Length the client
 *   would take its last byte as a clean end.
 *
 * Tests pause a fill at each step through `FillHooks` (hooks.ts style: a no-op in production).
 */
import { EventEmitter } from 'node:events'
import { open, unlink, type FileHandle } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { isStorageFull } from '../errors.js'
import type { Digest } from '../oci/digest.js'
import { FillWindow } from './fill-window.js'
import { BlobFillError, FillSink } from './fill-sink.js'

export { BlobFillError }

/** 'uncached': verified and served, but not in the cache (the disk was full). */
export type FillState = 'filling' | 'committing' | 'committed' | 'uncached' | 'failed'

/**
 * The points of a fill's life a test can pause at (the cache's commit adds 'renamed' and
 * 'indexed'). A hook that returns a promise holds the fill there until it resolves.
 */
export type FillStep = 'opened' | 'first-byte' | 'last-byte' | 'verified' | 'renamed' | 'indexed' | 'committed' | 'failed'
export type FillHook = (step: FillStep, fill: BlobFill) => void | Promise<void>

/** A reader's share of the fill's descriptor (see the header); `release` is idempotent. */
export interface FillHandle {
  readonly fh: FileHandle
  release: () => void
}

/** Bytes a pass-through fill holds in memory at most beyond what its slowest reader has read. */
export const PASS_THROUGH_WINDOW = 4 << 20

/** What a fill needs to know of a reader: the first byte it still needs (Infinity: none). */
export interface FillReader {
  readonly need: number
}

export interface BlobFillOptions {
  digest: Digest
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
  /** Called when the disk filled up and the fill became a pass-through (`fill.diskFull` is set). */
  onDiskFull?: (fill: BlobFill) => void
  /** Test hook, awaited at each step of the life cycle. */
  hook?: FillHook
}

/**
 * An in-flight download. Events: 'progress' (more bytes readable, or the state changed), 'attach'
 * (a reader joined).
 * Contract: `written` and `available` only grow; `state` leaves 'filling' exactly once; `done`
 * resolves once the body was verified (committed or 'uncached') and rejects with the failure (it
 * never rejects unhandled).
 */
export class BlobFill extends EventEmitter {
  readonly digest: Digest
  readonly expectedSize: number | undefined
  readonly mediaType: string | undefined
  /** Bytes written to the staging file so far (frozen once the disk is full). */
  written = 0
  state: FillState = 'filling'
  error: Error | undefined
  /** The write error that turned this fill into a pass-through, if the disk filled up. */
  diskFull: Error | undefined
  /** The staging path while filling and committing; the content path once committed. */
  path: string
  readonly done: Promise<void>
  private readonly opened: Promise<FileHandle>
  private readonly readers = new Set<FillReader>()
  private window: FillWindow | undefined
  /** Holders of the descriptor: the pipeline until it settles, plus every acquired handle. */
  private holders = 1
  private fdClosed = false

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
    // '+': readers read through this same descriptor (see the header).
    this.opened = open(opts.stagingPath, 'wx+')
    this.opened.catch(() => {})
    this.done = this.run()
    this.done.catch(() => {})
  }

  /** Final size: known once verified (or from the announced length). */
  get size (): number | undefined {
    return this.verified ? this.available : this.expectedSize
  }

  /**
   * Settled with a verified body: readers may end. Not yet while 'committing': a client that got its
   * last byte then would find its next request for the digest still JOINED instead of a HIT.
   */
  get verified (): boolean {
    return this.state === 'committed' || this.state === 'uncached'
  }

  /** Bytes readers may read so far: the staging file's, then the in-memory window's. */
  get available (): number {
    return this.window?.end ?? this.written
  }

  /** Bytes at `pos` (≥ `written`) from the in-memory window; undefined once dropped. */
  readWindow (pos: number, max: number): Buffer | undefined {
    return this.window?.read(pos, max)
  }

  /** A reader starts following this fill (TailReader's constructor); emits 'attach'. */
  attach (reader: FillReader): void {
    this.readers.add(reader)
    this.emit('attach', this.readers.size)
  }

  /** Readers following this fill now. */
  get readerCount (): number {
    return this.readers.size
  }

  /** A reader is gone; a pass-through nobody reads any more stops (nothing of it can be kept). */
  detach (reader: FillReader): void {
    this.readers.delete(reader)
    if (this.diskFull !== undefined && this.readers.size === 0 && this.state === 'filling') {
      this.abort(new BlobFillError('ERR_CACHE_DISK_FULL', `blob ${this.digest.value}: the cache disk is full and no client is reading any more`, { cause: this.diskFull }))
    }
    this.readerMoved()
  }

  /** A reader advanced: bytes every reader has passed leave the window. */
  readerMoved (): void {
    if (this.window === undefined) return
    let need = Infinity
    for (const r of this.readers) need = Math.min(need, r.need)
    this.window.drop(need)
  }

  /**
   * A share of the fill's descriptor for a reader (TailReader). Undefined when the fill settled and
   * its descriptor is closed: the caller looks the digest up again. Rejects with the fill's error
   * when it failed.
   */
  async acquire (): Promise<FillHandle | undefined> {
    const fh = await this.opened.catch(() => undefined)
    if (fh === undefined) await this.done.catch(() => {})
    if (this.state === 'failed') throw this.error
    if (this.fdClosed || fh === undefined) return undefined
    this.holders++
    let held = true
    return { fh, release: () => { if (held) { held = false; this.release() } } }
  }

  private release (): void {
    if (--this.holders > 0 || this.fdClosed) return
    this.fdClosed = true
    void this.opened.then(async fh => { await fh.close() }, () => {}).catch(() => {})
  }

  /** Stops the download (the fill fails with `err`); no-op once settled. */
  abort (err: Error): void {
    if (this.state === 'filling' && !this.opts.body.destroyed) this.opts.body.destroy(err)
  }

  private async run (): Promise<void> {
    const { digest, body, expectedSize } = this.opts
    let created = false
    try {
      const fh = await this.opened
      created = true
      await this.step('opened')
      const sink = new FillSink(digest, expectedSize, this.opts.idleTimeoutMs ?? 0, async buffers => await this.store(fh, buffers), () => this.window?.release())
      await pipeline(body, sink)
      await this.step('last-byte')
      if (expectedSize !== undefined && sink.length !== expectedSize) {
        throw new BlobFillError('ERR_BLOB_TRUNCATED', `blob ${digest.value}: upstream sent ${sink.length} of ${expectedSize} bytes`)
      }
      const actual = sink.hex()
      if (actual !== digest.hex) {
        throw new BlobFillError('ERR_BLOB_DIGEST_MISMATCH', `blob ${digest.value}: upstream body hashes to ${digest.algorithm}:${actual}`)
      }
      this.settle('committing')
      await this.step('verified')
      if (this.diskFull !== undefined) {
        await unlink(this.opts.stagingPath).catch(() => {})
        this.settle('uncached')
        this.finish()
        return
      }
      try {
        this.path = await this.opts.commit(this)
        this.settle('committed')
      } catch (err) {
        // Verified bytes, all in the file our readers hold open: they may still have them.
        this.diskFull = err as Error
        await unlink(this.opts.stagingPath).catch(() => {})
        this.settle('uncached')
        this.finish()
        return
      }
      await this.step('committed')
      this.finish()
    } catch (err) {
      if (!body.destroyed) body.destroy()
      this.error = err instanceof BlobFillError ? err : new BlobFillError('ERR_BLOB_FILL', `blob ${digest.value}: ${(err as Error)?.message ?? String(err)}`, { cause: err })
      // The staging name is free again before anyone can see 'failed' (and start the next fill).
      // Only our own file: an open that failed (EEXIST) must not delete somebody else's.
      if (created) await unlink(this.opts.stagingPath).catch(() => {})
      this.settle('failed')
      await this.step('failed')
      this.finish()
      throw this.error
    }
  }

  /** After the final state: the descriptor's pipeline share, the window, the owner's clean-up. */
  private finish (): void {
    this.window?.release()
    this.release()
    this.opts.onSettled?.(this)
  }

  /** One transition: the new state and the event readers wait for, in one synchronous step. */
  private settle (state: FillState): void {
    this.state = state
    this.emit('progress')
  }

  private async step (step: FillStep): Promise<void> {
    await this.opts.hook?.(step, this)
  }

  /** The pipeline's sink: the staging file, or the window once the disk is full. */
  private async store (fh: FileHandle, buffers: Buffer[]): Promise<void> {
    let pending = buffers
    while (pending.length > 0 && this.window === undefined) {
      let n: number
      try {
        // Positional: readers pread the same descriptor, so its file offset is nobody's state.
        n = (await fh.writev(pending, this.written)).bytesWritten
      } catch (err) {
        // Nobody to serve: fail as any fill would; else keep the readers going from memory.
        if (!isStorageFull(err) || this.readers.size === 0) throw err
        this.diskFull = err as Error
        this.window = new FillWindow(this.written, PASS_THROUGH_WINDOW)
        this.opts.onDiskFull?.(this)
        break
      }
      const first = this.written === 0
      this.written += n
      pending = skipBytes(pending, n)
      this.emit('progress')
      if (first) await this.step('first-byte')
    }
    if (this.window === undefined) return
    const appended = this.window.append(pending)
    this.readerMoved()
    this.emit('progress')
    await appended
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
