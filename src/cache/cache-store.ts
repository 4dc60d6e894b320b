/**
 * Opens the pull-through cache: one cacache directory (layout in cache-paths.ts) holding blobs,
 * manifests and tag records, each behind its own store (contracts in stores.ts), bounded together
 * by one LruBound (cacache-entries.ts).
 *
 *   CacheStore ─┬─ blobs      CacacheBlobStore       fills, the miss single-flight (blob-opener.ts)
 *               ├─ manifests  CacacheManifestStore
 *               ├─ tags       CacacheTagStore
 *               └─ stats / purgeInactive / close   ──► CacacheEntries (index, bound, removals, free space)
 */
import { mkdir } from 'node:fs/promises'
import cacache from 'cacache'
import type { Logger } from '../log.js'
import type { FillHook } from './blob-fill.js'
import { CacacheEntries } from './cacache-entries.js'
import { CacacheBlobStore } from './cacache-blob-store.js'
import { CacacheManifestStore } from './cacache-manifest-store.js'
import { CacacheTagStore } from './cacache-tag-store.js'
import type { CacheStats, CacheStore } from './stores.js'

export type { CacheStore, CachedBlob, CachedManifest, CacheOrigin, CacheStats } from './stores.js'
export { MAX_MANIFEST_BYTES } from './cacache-manifest-store.js'

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

/** Opens (creating if needed) the cache in `opts.dir`: sweep, load the index, restore recency. */
export async function openCacheStore (opts: CacheStoreOptions): Promise<CacheStore> {
  await mkdir(opts.dir, { recursive: true })
  const entries = new CacacheEntries(opts)
  await entries.load()
  const staging = await cacache.tmp.mkdir(opts.dir, { tmpPrefix: 'staging-' })
  const blobs = new CacacheBlobStore(entries, staging, opts)
  return {
    dir: opts.dir,
    blobs,
    manifests: new CacacheManifestStore(entries),
    tags: new CacacheTagStore(entries),
    stats: (): CacheStats => ({
      entries: entries.bound.count,
      usedBytes: entries.bound.usedBytes,
      reservedBytes: entries.bound.reserved,
      inflight: blobs.inflightCount,
      maxSize: entries.bound.maxSize,
      freeBytes: entries.free,
      evictions: entries.removed.evict,
      expirations: entries.removed.expire,
      fillsFailed: blobs.failed,
    }),
    purgeInactive: () => { entries.bound.purgeInactive() },
    close: async () => {
      await blobs.abortFills()
      await entries.close()
    },
  }
}
