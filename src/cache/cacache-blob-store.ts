/**
 * Cached blobs in the cacache directory (CacheBlobStore, stores.ts):
 *
 *   miss:  upstream body ─► BlobFill (staging file in cacache's tmp dir, hashed while written)
 *                               │ digest + length verified
 *                               ▼
 *          rename ─► content-v2/<algo>/<2>/<2>/<rest>  +  cacache.index.insert(key, integrity,
 *                    (zero-copy: no second write)          { size, metadata: { digest, mediaType } })
 *   hit:   LRU entry (path) ─► open fd ─► fs read stream (1 MiB reads), never cacache.get.stream
 *          (which re-hashes every byte it reads)
 *
 * The single-flight of misses is the store's own (blob-opener.ts): both doors share this store, so
 * one digest is fetched once whoever asks.
 */
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Readable } from 'node:stream'
import type { Digest } from '../oci/digest.js'
import { BlobFill, type FillHook } from './blob-fill.js'
import { BlobOpener, type FetchedBlob } from './blob-opener.js'
import type { Reservation } from './lru-bound.js'
import { blobKey, contentPath, integrityOf, manifestKey, stagingPath } from './cache-paths.js'
import type { CacacheEntries } from './cacache-entries.js'
import type { BeginFillResult, BlobSource, CacheBlobStore, CachedBlob, CacheOrigin, FillOptions } from './stores.js'
import cacache from 'cacache'

export interface CacacheBlobStoreOptions {
  /** Misses stream through uncached when the disk has less free space than this (CACHE_MIN_FREE). */
  minFree?: number
  /** A fill whose upstream sends nothing for this long fails (PROXY_READ_TIMEOUT). */
  idleTimeoutMs?: number
  /** Test hook: awaited at each step of every blob fill's life (blob-fill.ts). */
  fillHook?: FillHook
}

/**
 * Looks `openOrFill` makes before it gives up on an item that keeps moving. Each look but the first
 * follows a move (an eviction right after a look-up, a fill that settled before we took a share):
 * two in a row are already rare; four means the cache is thrashing, and the caller goes upstream.
 */
const OPEN_OR_FILL_LOOKS = 4

export class CacacheBlobStore implements CacheBlobStore {
  private readonly fills = new Map<string, BlobFill>()
  private readonly reservations = new Map<string, Reservation>()
  private readonly opener = new BlobOpener(this)
  /** Fills that failed since start (metrics). */
  failed = 0

  constructor (private readonly entries: CacacheEntries, private readonly stagingDir: string, private readonly opts: CacacheBlobStoreOptions = {}) {}

  stat (digest: Digest): CachedBlob | undefined {
    const e = this.entries.bound.get(blobKey(digest)) ?? this.entries.bound.get(manifestKey(digest))
    return e === undefined ? undefined : { digest, size: e.size, mediaType: e.mediaType }
  }

  async head (digest: Digest): Promise<CachedBlob | undefined> {
    return this.stat(digest)
  }

  async open (digest: Digest): Promise<{ blob: CachedBlob, fh: FileHandle } | undefined> {
    const e = this.entries.bound.get(blobKey(digest)) ?? this.entries.bound.get(manifestKey(digest))
    if (e === undefined) return undefined
    try {
      return { blob: { digest, size: e.size, mediaType: e.mediaType }, fh: await open(e.path, 'r') }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      this.entries.bound.delete(blobKey(digest))
      this.entries.bound.delete(manifestKey(digest))
      return undefined
    }
  }

  inflight (digest: Digest): BlobFill | undefined {
    const fill = this.fills.get(digest.value)
    return fill?.diskFull === undefined && fill?.state !== 'failed' ? fill : undefined
  }

  async openOrFill<A> (digest: Digest, fetch: () => Promise<FetchedBlob<A>>): Promise<BlobSource<A>> {
    for (let look = 0; look < OPEN_OR_FILL_LOOKS; look++) {
      const opened = await this.open(digest)
      if (opened !== undefined) return { kind: 'cached', ...opened }
      const source = await this.opener.openOrFill(digest, fetch)
      if (source.kind === 'cached') continue // committed since our look-up: open it
      if (source.kind !== 'fill') return source
      // The share is taken here, so the caller's reader cannot find the fill gone: a fill that
      // settled and closed its descriptor meanwhile is committed (or failed, and this rejects).
      const handle = await source.fill.acquire()
      if (handle !== undefined) return { ...source, handle }
    }
    return { kind: 'moving' }
  }

  beginFill (digest: Digest, body: Readable, opts: FillOptions = {}): BeginFillResult {
    const { entries } = this
    const current = this.fills.get(digest.value)
    if (current?.diskFull !== undefined) return { bypass: `the cache disk is full (${(current.diskFull as NodeJS.ErrnoException).code ?? current.diskFull.message})` }
    // A failed fill still cleaning up has freed its staging name already: the next one may start.
    if (current !== undefined && current.state !== 'failed') throw new Error(`a fill of ${digest.value} is already in flight`)
    const size = opts.expectedSize
    if (size !== undefined && size > entries.bound.maxSize) return { bypass: `blob of ${size} bytes is larger than CACHE_MAX_SIZE (${entries.bound.maxSize})` }
    const minFree = this.opts.minFree ?? 0
    if (entries.free - (size ?? 0) < minFree) {
      // Re-measure now rather than on the next tick: space freed meanwhile is used by the next miss.
      void entries.refreshFree()
      return { bypass: `free disk space ${entries.free} bytes is below CACHE_MIN_FREE (${minFree}) with this blob` }
    }
    // An unannounced length reserves nothing; its commit evicts what it needs (a brief overshoot).
    const reservation = entries.bound.reserve(size ?? 0)
    if (reservation === undefined) return { bypass: `no room: ${entries.bound.reserved} bytes of CACHE_MAX_SIZE are reserved by downloads in flight` }
    entries.free -= size ?? 0
    const log = entries.log
    const fill = new BlobFill({
      digest,
      body,
      stagingPath: stagingPath(this.stagingDir, digest),
      expectedSize: size,
      mediaType: opts.mediaType,
      idleTimeoutMs: this.opts.idleTimeoutMs,
      hook: this.opts.fillHook,
      commit: async f => await this.commit(f, opts.origin),
      onSettled: f => {
        entries.bound.release(reservation)
        // A failed fill's slot may already hold the next fill of the digest (see above).
        if (this.fills.get(digest.value) === f) {
          this.reservations.delete(digest.value)
          this.fills.delete(digest.value)
        }
        if (f.state === 'failed') this.failed++
        if (f.state === 'failed') log.warn({ digest: digest.value, err: f.error?.message, code: (f.error as { code?: string })?.code }, 'blob fill failed, nothing committed')
        if (f.state === 'uncached') log.warn({ digest: digest.value, size: f.size, err: f.diskFull?.message }, 'blob verified and served, not cached: the cache disk is full')
        void entries.refreshFree()
      },
      onDiskFull: f => {
        // Until the next statfs says otherwise, misses stream through instead of meeting ENOSPC.
        entries.free = 0
        log.warn({ digest: digest.value, written: f.written, err: f.diskFull?.message }, 'cache disk full mid-blob: streaming the rest through uncached')
      },
    })
    this.fills.set(digest.value, fill)
    this.reservations.set(digest.value, reservation)
    return { fill }
  }

  fillsInFlight (): Array<{ digest: string, written: number, expectedSize?: number, readers: number }> {
    return [...this.fills.values()].map(f => ({ digest: f.digest.value, written: f.written, expectedSize: f.expectedSize, readers: f.readerCount }))
  }

  get inflightCount (): number {
    return this.fills.size
  }

  async fillsSettled (): Promise<void> {
    while (this.fills.size > 0) await Promise.allSettled([...this.fills.values()].map(async f => await f.done))
  }

  /** Aborts every fill in flight (nothing partial is committed) and waits for them to settle. */
  async abortFills (): Promise<void> {
    const fills = [...this.fills.values()]
    for (const f of fills) f.abort(new Error('cache closing'))
    await Promise.allSettled(fills.map(async f => await f.done))
  }

  private async commit (fill: BlobFill, origin?: CacheOrigin): Promise<string> {
    const { entries } = this
    const d = fill.digest
    const key = blobKey(d)
    const size = fill.written
    await entries.settledRemovals(key, `content:${d.value}`)
    const target = contentPath(entries.dir, d)
    await mkdir(dirname(target), { recursive: true })
    await rename(fill.path, target)
    try {
      await this.opts.fillHook?.('renamed', fill)
      await cacache.index.insert(entries.dir, key, integrityOf(d), { size, metadata: { digest: d.value, mediaType: fill.mediaType, ...origin } })
      await this.opts.fillHook?.('indexed', fill)
    } catch (err) {
      // Content without an index entry would only be swept at the next start.
      await rm(target, { force: true })
      throw err
    }
    const r = this.reservations.get(d.value)
    if (r !== undefined) entries.bound.release(r)
    if (!entries.bound.add(key, { kind: 'blob', digest: d, size, path: target, mediaType: fill.mediaType, lastReadAt: entries.now() })) {
      entries.remove(key, { kind: 'blob', digest: d, size, path: target, lastReadAt: 0 }, 'evict')
    }
    entries.log.debug({ digest: d.value, size }, 'blob committed')
    return target
  }
}
