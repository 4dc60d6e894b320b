/**
 * The pull-through cache's store: layers, manifests and tag records in one cacache directory
 * (layout in cache-paths.ts), bounded by an LruBound over its entries.
 *
 *   miss:  upstream body ─► BlobFill (staging file in cacache's tmp dir, hashed while written)
 *                               │ digest + length verified
 *                               ▼
 *          rename ─► content-v2/<algo>/<2>/<2>/<rest>  +  cacache.index.insert(key, integrity,
 *                    (zero-copy: no second write)          { size, metadata: { digest, mediaType } })
 *   hit:   LRU entry (path) ─► open fd ─► fs read stream (1 MiB reads), never cacache.get.stream
 *          (which re-hashes every byte it reads)
 *
 * Sharing: blobs and manifests are keyed by digest only, so every repository and upstream shares
 * one copy; tag records are keyed by (host, repository, tag, Accept) and point at a manifest digest.
 * A tag record's cacache entry uses its manifest's integrity, so `get.info(tagKey).path` is the
 * manifest's content; the tag does not own that content (evicting a tag removes only its entry).
 *
 * Ownership of the disk: at start everything under tmp/ is swept (partial downloads of a previous
 * run), index entries whose content vanished are dropped, content no index entry points at is
 * removed. One crossdock process per CACHE_DIR.
 */
import { mkdir, open, readdir, readFile, rename, rm, stat, statfs, type FileHandle } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { dirname, join, relative, sep } from 'node:path'
import type { Readable } from 'node:stream'
import cacache from 'cacache'
import type { Logger } from '../log.js'
import { BlobFill, type FillHook } from './blob-fill.js'
import { BlobOpener, type BlobSource, type FetchedBlob } from './blob-opener.js'
import { LruBound, type BoundEntry, type RemoveReason, type Reservation } from './lru-bound.js'
import {
  blobKey, contentDir, contentPath, integrityOf, manifestKey, parseDigest, recencyPath, stagingPath, tmpDir,
  type ParsedDigest,
} from './cache-paths.js'
import { tagKey, type TagRecord, type TagRef } from './tag-key.js'

/** What the LRU knows about one cache key. */
export interface StoreEntry extends BoundEntry {
  kind: 'blob' | 'manifest' | 'tag'
  digest: string
  /** The content file (for a tag: its manifest's). */
  path: string
  mediaType?: string
  record?: TagRecord
}

export interface CachedBlob {
  digest: string
  size: number
  mediaType?: string
  path: string
}

export interface CachedManifest {
  digest: string
  mediaType: string
  bytes: Buffer
}

export type BeginFillResult = { fill: BlobFill } | { bypass: string }

/**
 * Where a cached item was first fetched from, kept in its index metadata so operators can see what
 * the cache holds (`crossdock cache ls`). Content is shared by digest: a blob later read through
 * other repositories keeps the first one.
 */
export interface CacheOrigin {
  host: string
  repository: string
}

export interface CacheStoreOptions {
  dir: string
  maxSize: number
  inactiveMs: number
  /** Misses stream through uncached when the disk has less free space than this (CACHE_MIN_FREE). */
  minFree?: number
  /** A fill whose upstream sends nothing for this long fails (PROXY_READ_TIMEOUT). */
  idleTimeoutMs?: number
  persistEveryMs?: number
  log: Logger
  now?: () => number
  /** Test hook: awaited at each step of every blob fill's life (blob-fill.ts). */
  fillHook?: FillHook
}

/** Nominal bytes a tag record counts in the bound (its index line). */
const TAG_SIZE = 512
/** Manifests above this are not cached (distribution refuses manifests over 4 MiB). */
export const MAX_MANIFEST_BYTES = 16 << 20

/** Opens (creating if needed) the cache in `opts.dir`: sweep, load the index, restore recency. */
export async function openCacheStore (opts: CacheStoreOptions): Promise<CacheStore> {
  await mkdir(opts.dir, { recursive: true })
  await sweepTmp(opts.dir)
  const staging = await cacache.tmp.mkdir(opts.dir, { tmpPrefix: 'staging-' })
  const store = new CacheStore(opts, staging)
  await store.load()
  return store
}

export class CacheStore {
  readonly dir: string
  private readonly bound: LruBound<StoreEntry>
  private readonly fills = new Map<string, BlobFill>()
  private readonly opener = new BlobOpener(this)
  private readonly reservations = new Map<string, Reservation>()
  /** Disk removals in progress, by cache key and by `content:<digest>`; writers of the same key wait. */
  private readonly removals = new Map<string, Promise<void>>()
  private readonly log: Logger
  private readonly now: () => number
  private free = Infinity
  private readonly freeTimer: NodeJS.Timeout
  /** Entries removed since start: for the size bound (evict) and for CACHE_INACTIVE (expire). */
  private readonly removed = { evict: 0, expire: 0 }
  private fillsFailed = 0

  constructor (private readonly opts: CacheStoreOptions, private readonly stagingDir: string) {
    this.dir = opts.dir
    this.log = opts.log
    this.now = opts.now ?? Date.now
    this.bound = new LruBound<StoreEntry>({
      maxSize: opts.maxSize,
      inactiveMs: opts.inactiveMs,
      recencyFile: recencyPath(opts.dir),
      persistEveryMs: opts.persistEveryMs,
      now: this.now,
      onRemove: (key, value, reason) => this.remove(key, value, reason),
    })
    this.freeTimer = setInterval(() => { void this.refreshFree() }, 5_000)
    this.freeTimer.unref()
  }

  /** @internal Restores the LRU from cacache's index, least recently read first. */
  async load (): Promise<void> {
    await this.refreshFree()
    const recency = await this.bound.loadRecency()
    const entries = Object.values(await cacache.ls(this.dir))
    const lastRead = (e: cacache.CacheEntry): number => recency.get(e.key) ?? e.time
    entries.sort((a, b) => lastRead(a) - lastRead(b))
    const kept = new Set<string>()
    for (const e of entries) {
      const entry = await this.restore(e, lastRead(e))
      if (entry === undefined) { await cacache.rm.entry(this.dir, e.key, { removeFully: true }).catch(() => {}); continue }
      if (this.bound.add(e.key, entry)) kept.add(relative(this.dir, entry.path))
    }
    this.bound.purgeInactive()
    await this.sweepOrphans(kept)
    this.log.info({ entries: this.bound.count, bytes: this.bound.usedBytes, maxSize: this.opts.maxSize }, 'cache loaded')
  }

  // ── blobs ─────────────────────────────────────────────────────────────────────────────────

  /** The cached blob (marking it read), or undefined. Does not open the file. */
  statBlob (digest: string): CachedBlob | undefined {
    const d = parseDigest(digest)
    if (d === undefined) return undefined
    const e = this.bound.get(blobKey(d)) ?? this.bound.get(manifestKey(d))
    return e === undefined ? undefined : { digest: d.digest, size: e.size, mediaType: e.mediaType, path: e.path }
  }

  /**
   * Opens a cached blob for reading. The caller owns the handle (a read stream made from it closes
   * it). An open handle keeps the bytes readable even if the entry is evicted meanwhile.
   * Undefined when not cached (or its file vanished, in which case the entry is dropped).
   */
  async openBlob (digest: string): Promise<{ blob: CachedBlob, fh: FileHandle } | undefined> {
    const blob = this.statBlob(digest)
    if (blob === undefined) return undefined
    try {
      return { blob, fh: await open(blob.path, 'r') }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      const d = parseDigest(digest) as ParsedDigest
      this.bound.delete(blobKey(d))
      this.bound.delete(manifestKey(d))
      return undefined
    }
  }

  /**
   * The download of `digest` in flight, if any (join it with a TailReader). A fill that the full
   * disk turned into a pass-through is not joinable: its early bytes are no longer anywhere.
   */
  inflight (digest: string): BlobFill | undefined {
    const fill = this.fills.get(digest)
    return fill?.diskFull === undefined && fill?.state !== 'failed' ? fill : undefined
  }

  /** A blob miss, single-flighted across every caller of this cache (blob-opener.ts). */
  async openOrFill<A> (digest: string, fetch: () => Promise<FetchedBlob<A>>): Promise<BlobSource<A>> {
    return await this.opener.openOrFill(digest, fetch)
  }

  /**
   * Starts filling `digest` from `body`. On `{ fill }` the fill owns `body`; on `{ bypass }` (too
   * large for the cache, no room beside other downloads, disk below CACHE_MIN_FREE) the caller
   * still owns it and should stream it through uncached. Throws if a fill of `digest` is in flight.
   */
  beginBlobFill (digest: string, body: Readable, opts: { expectedSize?: number, mediaType?: string, origin?: CacheOrigin } = {}): BeginFillResult {
    const d = parseDigest(digest)
    if (d === undefined) throw new Error(`not a verifiable digest: ${digest}`)
    const current = this.fills.get(d.digest)
    if (current?.diskFull !== undefined) return { bypass: `the cache disk is full (${(current.diskFull as NodeJS.ErrnoException).code ?? current.diskFull.message})` }
    // A failed fill still cleaning up has freed its staging name already: the next one may start.
    if (current !== undefined && current.state !== 'failed') throw new Error(`a fill of ${d.digest} is already in flight`)
    const size = opts.expectedSize
    if (size !== undefined && size > this.bound.maxSize) return { bypass: `blob of ${size} bytes is larger than CACHE_MAX_SIZE (${this.bound.maxSize})` }
    const minFree = this.opts.minFree ?? 0
    if (this.free - (size ?? 0) < minFree) {
      // Re-measure now rather than on the next tick: space freed meanwhile is used by the next miss.
      void this.refreshFree()
      return { bypass: `free disk space ${this.free} bytes is below CACHE_MIN_FREE (${minFree}) with this blob` }
    }
    // An unannounced length reserves nothing; its commit evicts what it needs (a brief overshoot).
    const reservation = this.bound.reserve(size ?? 0)
    if (reservation === undefined) return { bypass: `no room: ${this.bound.reserved} bytes of CACHE_MAX_SIZE are reserved by downloads in flight` }
    this.free -= size ?? 0
    const fill = new BlobFill({
      digest: d,
      body,
      stagingPath: stagingPath(this.stagingDir, d),
      expectedSize: size,
      mediaType: opts.mediaType,
      idleTimeoutMs: this.opts.idleTimeoutMs,
      hook: this.opts.fillHook,
      commit: async f => await this.commitBlob(f, opts.origin),
      onSettled: f => {
        this.bound.release(reservation)
        // A failed fill's slot may already hold the next fill of the digest (see beginBlobFill).
        if (this.fills.get(d.digest) === f) {
          this.reservations.delete(d.digest)
          this.fills.delete(d.digest)
        }
        if (f.state === 'failed') this.fillsFailed++
        if (f.state === 'failed') this.log.warn({ digest: d.digest, err: f.error?.message, code: (f.error as { code?: string })?.code }, 'blob fill failed, nothing committed')
        if (f.state === 'uncached') this.log.warn({ digest: d.digest, size: f.size, err: f.diskFull?.message }, 'blob verified and served, not cached: the cache disk is full')
        void this.refreshFree()
      },
      onDiskFull: f => {
        // Until the next statfs says otherwise, misses stream through instead of meeting ENOSPC.
        this.free = 0
        this.log.warn({ digest: d.digest, written: f.written, err: f.diskFull?.message }, 'cache disk full mid-blob: streaming the rest through uncached')
      },
    })
    this.fills.set(d.digest, fill)
    this.reservations.set(d.digest, reservation)
    return { fill }
  }

  private async commitBlob (fill: BlobFill, origin?: CacheOrigin): Promise<string> {
    const d = fill.digest
    const key = blobKey(d)
    const size = fill.written
    await this.settledRemovals(key, `content:${d.digest}`)
    const target = contentPath(this.dir, d)
    await mkdir(dirname(target), { recursive: true })
    await rename(fill.path, target)
    try {
      await this.opts.fillHook?.('renamed', fill)
      await cacache.index.insert(this.dir, key, integrityOf(d), { size, metadata: { digest: d.digest, mediaType: fill.mediaType, ...origin } })
      await this.opts.fillHook?.('indexed', fill)
    } catch (err) {
      // Content without an index entry would only be swept at the next start.
      await rm(target, { force: true })
      throw err
    }
    const r = this.reservations.get(d.digest)
    if (r !== undefined) this.bound.release(r)
    if (!this.bound.add(key, { kind: 'blob', digest: d.digest, size, path: target, mediaType: fill.mediaType, lastReadAt: this.now() })) {
      this.remove(key, { kind: 'blob', digest: d.digest, size, path: target, lastReadAt: 0 }, 'evict')
    }
    this.log.debug({ digest: d.digest, size }, 'blob committed')
    return target
  }

  // ── manifests ─────────────────────────────────────────────────────────────────────────────

  hasManifest (digest: string): boolean {
    const d = parseDigest(digest)
    return d !== undefined && this.bound.peek(manifestKey(d)) !== undefined
  }

  /** The cached manifest (marking it read), or undefined. */
  async getManifest (digest: string): Promise<CachedManifest | undefined> {
    const d = parseDigest(digest)
    if (d === undefined) return undefined
    const e = this.bound.get(manifestKey(d))
    if (e === undefined) return undefined
    try {
      return { digest: d.digest, mediaType: e.mediaType ?? 'application/octet-stream', bytes: await readFile(e.path) }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      this.bound.delete(manifestKey(d))
      return undefined
    }
  }

  /**
   * Stores a manifest under its digest. Returns false (storing nothing) when `bytes` do not hash to
   * `digest`, or when the manifest is too large to cache. Idempotent.
   */
  async putManifest (digest: string, bytes: Buffer, mediaType: string, origin?: CacheOrigin): Promise<boolean> {
    const d = parseDigest(digest)
    if (d === undefined || bytes.length > MAX_MANIFEST_BYTES) return false
    if (createHash(d.algorithm).update(bytes).digest('hex') !== d.hex) return false
    const key = manifestKey(d)
    if (this.bound.peek(key) !== undefined) return true
    await this.settledRemovals(key, `content:${d.digest}`)
    // cacache hashes what it writes: one algorithm, the digest's own.
    await cacache.put(this.dir, key, bytes, { algorithms: [d.algorithm], integrity: integrityOf(d), size: bytes.length, metadata: { digest: d.digest, mediaType, ...origin } })
    return this.bound.add(key, { kind: 'manifest', digest: d.digest, size: bytes.length, path: contentPath(this.dir, d), mediaType, lastReadAt: this.now() })
  }

  // ── tags ──────────────────────────────────────────────────────────────────────────────────

  /** The last known resolution of a tag (marking it read), or undefined. */
  getTag (ref: TagRef): TagRecord | undefined {
    return this.bound.get(tagKey(ref))?.record
  }

  /** Remembers a tag resolution, in memory at once and in the index (replacing the previous one). */
  async putTag (ref: TagRef, record: TagRecord): Promise<void> {
    const d = parseDigest(record.digest)
    if (d === undefined) return
    const key = tagKey(ref)
    this.bound.add(key, { kind: 'tag', digest: d.digest, size: TAG_SIZE, path: contentPath(this.dir, d), record: { ...record }, lastReadAt: this.now() })
    await this.settledRemovals(key)
    // One line per tag bucket instead of an ever-growing append log; losing it in a crash between
    // the two calls only forgets one tag.
    await cacache.rm.entry(this.dir, key, { removeFully: true })
    await cacache.index.insert(this.dir, key, integrityOf(d), { size: record.size, metadata: { ...record } })
  }

  // ── housekeeping ──────────────────────────────────────────────────────────────────────────

  stats (): { entries: number, usedBytes: number, reservedBytes: number, inflight: number, maxSize: number, freeBytes: number, evictions: number, expirations: number, fillsFailed: number } {
    return { entries: this.bound.count, usedBytes: this.bound.usedBytes, reservedBytes: this.bound.reserved, inflight: this.fills.size, maxSize: this.bound.maxSize, freeBytes: this.free, evictions: this.removed.evict, expirations: this.removed.expire, fillsFailed: this.fillsFailed }
  }

  /** Blob downloads in flight (the status page): bytes on disk so far, the announced size, readers attached. */
  fillsInFlight (): Array<{ digest: string, written: number, expectedSize?: number, readers: number }> {
    return [...this.fills.values()].map(f => ({ digest: f.digest.digest, written: f.written, expectedSize: f.expectedSize, readers: f.readerCount }))
  }

  /** Resolves once no blob fill is in flight, fills started meanwhile included (graceful shutdown). */
  async fillsSettled (): Promise<void> {
    while (this.fills.size > 0) await Promise.allSettled([...this.fills.values()].map(async f => await f.done))
  }

  /** Drops entries not read for CACHE_INACTIVE now (also done periodically). */
  purgeInactive (): void {
    this.bound.purgeInactive()
  }

  /** Aborts fills in flight (nothing partial is committed), waits for removals, persists recency. */
  async close (): Promise<void> {
    clearInterval(this.freeTimer)
    const fills = [...this.fills.values()]
    for (const f of fills) f.abort(new Error('cache closing'))
    await Promise.allSettled(fills.map(async f => await f.done))
    await Promise.allSettled([...this.removals.values()])
    await this.bound.close()
  }

  private remove (key: string, value: StoreEntry, reason: RemoveReason): void {
    this.log.debug({ key, size: value.size, reason }, 'cache entry removed')
    if (reason === 'evict' || reason === 'expire') this.removed[reason]++
    const d = parseDigest(value.digest)
    // Content is shared by `blob:X` and `manifest:X`; tags never own it.
    const otherKey = d === undefined ? undefined : value.kind === 'blob' ? manifestKey(d) : value.kind === 'manifest' ? blobKey(d) : undefined
    const dropContent = d !== undefined && value.kind !== 'tag' && (otherKey === undefined || this.bound.peek(otherKey) === undefined)
    const work = (async () => {
      await cacache.rm.entry(this.dir, key, { removeFully: true })
      if (dropContent) await cacache.rm.content(this.dir, integrityOf(d))
    })().catch(err => this.log.warn({ key, err: (err as Error).message }, 'cache removal failed'))
    const track = (k: string): void => {
      const p = work.finally(() => { if (this.removals.get(k) === p) this.removals.delete(k) })
      this.removals.set(k, p)
    }
    track(key)
    if (dropContent) track(`content:${d.digest}`)
  }

  private async settledRemovals (...keys: string[]): Promise<void> {
    await Promise.all(keys.map(async k => await this.removals.get(k)))
  }

  private async restore (e: cacache.CacheEntry, lastReadAt: number): Promise<StoreEntry | undefined> {
    const meta = (e.metadata ?? {}) as { digest?: string, mediaType?: string }
    if (e.key.startsWith('tag:')) {
      const record = e.metadata as TagRecord | undefined
      if (record === undefined || parseDigest(record.digest) === undefined) return undefined
      return { kind: 'tag', digest: record.digest, size: TAG_SIZE, path: e.path, record, lastReadAt }
    }
    const kind = e.key.startsWith('blob:') ? 'blob' : e.key.startsWith('manifest:') ? 'manifest' : undefined
    const d = parseDigest(meta.digest ?? '')
    if (kind === undefined || d === undefined || e.key !== `${kind}:${d.digest}`) return undefined
    const st = await stat(e.path).catch(() => undefined)
    if (st === undefined || (e.size !== undefined && st.size !== e.size)) return undefined
    return { kind, digest: d.digest, size: st.size, path: e.path, mediaType: meta.mediaType, lastReadAt }
  }

  /** Removes content files no index entry points at (a crash between rename and index insert). */
  private async sweepOrphans (kept: Set<string>): Promise<void> {
    const root = contentDir(this.dir)
    const files = await readdir(root, { recursive: true }).catch(() => [] as string[])
    let removed = 0
    for (const f of files) {
      if (f.split(sep).length !== 4) continue
      if (kept.has(join('content-v2', f))) continue
      await rm(join(root, f), { force: true, recursive: true })
      removed++
    }
    if (removed > 0) this.log.info({ removed }, 'cache: removed content without index entries')
  }

  private async refreshFree (): Promise<void> {
    try {
      const s = await statfs(this.dir)
      this.free = s.bavail * s.bsize - this.bound.reserved
    } catch {
      this.free = Infinity
    }
  }
}

/** Removes every leftover of previous runs from cacache's tmp dir (staging files, cacache temps). */
async function sweepTmp (dir: string): Promise<void> {
  const tmp = tmpDir(dir)
  const names = await readdir(tmp).catch(() => [] as string[])
  await Promise.all(names.map(async n => await rm(join(tmp, n), { recursive: true, force: true })))
}
