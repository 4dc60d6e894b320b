/**
 * What the three cacache stores share: one cacache directory (layout in cache-paths.ts), its index
 * as an LruBound over every entry (blobs, manifests, tags count against one CACHE_MAX_SIZE), the
 * removals in flight, and the disk's free space. The stores (cacache-blob-store.ts,
 * cacache-manifest-store.ts, cacache-tag-store.ts) add and read entries here; this module alone
 * removes them from disk.
 *
 * Ownership of the disk: at start everything under tmp/ is swept (partial downloads of a previous
 * run), index entries whose content vanished are dropped, content no index entry points at is
 * removed. One crossdock process per CACHE_DIR.
 *
 * Sharing: `blob:X` and `manifest:X` share X's content file, which goes only when neither key is
 * left; a tag record's entry uses its manifest's integrity but never owns that content.
 */
import { readdir, rm, stat, statfs } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import cacache from 'cacache'
import type { Logger } from '../log.js'
import { tryParseDigest, type Digest } from '../oci/digest.js'
import { LruBound, type BoundEntry, type RemoveReason } from './lru-bound.js'
import { blobKey, contentDir, integrityOf, manifestKey, recencyPath, tmpDir } from './cache-paths.js'
import type { TagRecord } from './tag-key.js'

/** What the LRU knows about one cache key. */
export interface StoreEntry extends BoundEntry {
  kind: 'blob' | 'manifest' | 'tag'
  digest: Digest
  /** The content file (for a tag: its manifest's). */
  path: string
  mediaType?: string
  record?: TagRecord
}

/** Nominal bytes a tag record counts in the bound (its index line). */
export const TAG_SIZE = 512

/**
 * The index rules in one place (the store's load and the operator commands share them): what a
 * cacache index entry means, or undefined for one the store drops (unknown key, bad digest, a key
 * that does not match its digest).
 */
export type IndexMeaning =
  | { kind: 'tag', digest: Digest, record: TagRecord }
  | { kind: 'blob' | 'manifest', digest: Digest, mediaType?: string, host?: string, repository?: string }

export function meaningOf (e: { key: string, metadata?: unknown }): IndexMeaning | undefined {
  const meta = (e.metadata ?? {}) as { digest?: string, mediaType?: string, host?: string, repository?: string }
  const d = tryParseDigest(meta.digest ?? '')
  if (d === undefined) return undefined
  if (e.key.startsWith('tag:')) return { kind: 'tag', digest: d, record: e.metadata as TagRecord }
  const kind = e.key.startsWith('blob:') ? 'blob' : e.key.startsWith('manifest:') ? 'manifest' : undefined
  if (kind === undefined || e.key !== `${kind}:${d.value}`) return undefined
  return { kind, digest: d, mediaType: meta.mediaType, host: meta.host, repository: meta.repository }
}

export interface CacacheEntriesOptions {
  dir: string
  maxSize: number
  inactiveMs: number
  persistEveryMs?: number
  log: Logger
  now?: () => number
}

export class CacacheEntries {
  readonly dir: string
  readonly bound: LruBound<StoreEntry>
  readonly log: Logger
  readonly now: () => number
  /** Free bytes on the cache disk, less what downloads have reserved (re-measured every 5 s and after each fill). */
  free = Infinity
  /** Entries removed since start: for the size bound (evict) and for CACHE_INACTIVE (expire). */
  readonly removed = { evict: 0, expire: 0 }
  /** Disk removals in progress, by cache key and by `content:<digest>`; writers of the same key wait. */
  private readonly removals = new Map<string, Promise<void>>()
  private readonly freeTimer: NodeJS.Timeout

  constructor (opts: CacacheEntriesOptions) {
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

  /** Restores the LRU from cacache's index, least recently read first; drops what is broken. */
  async load (): Promise<void> {
    await sweepTmp(this.dir)
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
    this.log.info({ entries: this.bound.count, bytes: this.bound.usedBytes, maxSize: this.bound.maxSize }, 'cache loaded')
  }

  /** Resolves once the removals of `keys` (cache keys or `content:<digest>`) in flight are done. */
  async settledRemovals (...keys: string[]): Promise<void> {
    await Promise.all(keys.map(async k => await this.removals.get(k)))
  }

  /** Removes an entry the bound no longer holds (or refused) from disk; see the header for content. */
  remove (key: string, value: StoreEntry, reason: RemoveReason): void {
    this.log.debug({ key, size: value.size, reason }, 'cache entry removed')
    if (reason === 'evict' || reason === 'expire') this.removed[reason]++
    const d = value.digest
    const otherKey = value.kind === 'blob' ? manifestKey(d) : value.kind === 'manifest' ? blobKey(d) : undefined
    const dropContent = value.kind !== 'tag' && (otherKey === undefined || this.bound.peek(otherKey) === undefined)
    const work = (async () => {
      await cacache.rm.entry(this.dir, key, { removeFully: true })
      if (dropContent) await cacache.rm.content(this.dir, integrityOf(d))
    })().catch(err => this.log.warn({ key, err: (err as Error).message }, 'cache removal failed'))
    const track = (k: string): void => {
      const p = work.finally(() => { if (this.removals.get(k) === p) this.removals.delete(k) })
      this.removals.set(k, p)
    }
    track(key)
    if (dropContent) track(`content:${d.value}`)
  }

  async refreshFree (): Promise<void> {
    try {
      const s = await statfs(this.dir)
      this.free = s.bavail * s.bsize - this.bound.reserved
    } catch {
      this.free = Infinity
    }
  }

  /** Waits for removals in flight and persists recency. */
  async close (): Promise<void> {
    clearInterval(this.freeTimer)
    await Promise.allSettled([...this.removals.values()])
    await this.bound.close()
  }

  private async restore (e: cacache.CacheEntry, lastReadAt: number): Promise<StoreEntry | undefined> {
    const m = meaningOf(e)
    if (m === undefined) return undefined
    if (m.kind === 'tag') return { kind: 'tag', digest: m.digest, size: TAG_SIZE, path: e.path, record: m.record, lastReadAt }
    const st = await stat(e.path).catch(() => undefined)
    if (st === undefined || (e.size !== undefined && st.size !== e.size)) return undefined
    return { kind: m.kind, digest: m.digest, size: st.size, path: e.path, mediaType: m.mediaType, lastReadAt }
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
}

/** Removes every leftover of previous runs from cacache's tmp dir (staging files, cacache temps). */
async function sweepTmp (dir: string): Promise<void> {
  const tmp = tmpDir(dir)
  const names = await readdir(tmp).catch(() => [] as string[])
  await Promise.all(names.map(async n => await rm(join(tmp, n), { recursive: true, force: true })))
}
