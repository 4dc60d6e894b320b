/**
 * Opens the pull-through cache with STORAGE=s3: this replica's cacache store (the local tier, in
 * CACHE_DIR, bounded by LOCAL_CACHE_MAX_SIZE) in front of the bucket's `cache/` (cache-keys.ts),
 * behind the same CacheStore contract as the cacache store alone, so the mirror does not know.
 *
 *   CacheStore ─┬─ blobs      BucketBlobStore      local tier → blobs/ → elect: lead (fetch, parts,
 *               │                                  publish) or follow (parts as they land)
 *               ├─ manifests  BucketManifestStore  write-through; local, else bucket
 *               ├─ tags       BucketTagStore       write-through; `lookup` local, else bucket
 *               └─ stats / purgeInactive / close ─► the local tier's (the bucket's bound is the
 *                                                  janitor's: CACHE_MAX_SIZE, CACHE_INACTIVE)
 *
 * `fillLock` elects who fills a blob cluster-wide (cluster/fill-lock.ts): LocalFillLock (every
 * replica leads: duplicate upstream fetches, one object) unless the caller passes a coordinated one.
 * The caller owns the lock (closes it), and the bucket client when it passes one (the app shares
 * one with the hosted storage); otherwise the cache makes its own and destroys it on close.
 */
import type { S3Config } from '../../config/index.js'
import { S3Bucket, type S3BucketOptions } from '../../objects/s3-bucket.js'
import { LocalFillLock, type FillLock } from '../../cluster/fill-lock.js'
import { openCacheStore, type CacheStoreOptions } from '../cache-store.js'
import type { CacheStore } from '../stores.js'
import { CacheKeys } from './cache-keys.js'
import { BucketBlobStore, blobFillKey } from './bucket-blob-store.js'
import { BucketManifestStore } from './bucket-manifest-store.js'
import { BucketTagStore } from './bucket-tag-store.js'
import { NO_READ_TIMES, type ReadTimes } from './read-times.js'
import { BatchedReadTimes } from './batched-read-times.js'
import { BucketJanitor } from './bucket-janitor.js'
import { DEFAULT_FOLLOW, type FollowOptions } from './bucket-fill-follower.js'
import type { BucketFillHook } from './bucket-fill-writer.js'

export interface BucketCacheOptions extends CacheStoreOptions {
  /** `maxSize` (inherited) is the local tier's bound: LOCAL_CACHE_MAX_SIZE. */
  s3: S3Config
  /** A client for `s3`'s bucket that the caller destroys after `close`; default: the cache's own, with `bucketOptions`. */
  bucket?: S3Bucket
  bucketOptions?: S3BucketOptions
  /** Who fills a blob cluster-wide; default LocalFillLock (no coordination). */
  fillLock?: FillLock
  /** Told of every hit (the bucket janitor's access times); default: records nothing. */
  readTimes?: ReadTimes
  /** How long a follower waits on a silent leader; stallMs defaults to `idleTimeoutMs` (PROXY_READ_TIMEOUT). */
  follow?: Partial<FollowOptions>
  /** Test hook: awaited at each step of every copy into the bucket. */
  writerHook?: BucketFillHook
  /**
   * The bucket's housekeeping, for a serving replica: read times recorded in batches, and the
   * janitor (one replica at a time) bounding the bucket by CACHE_MAX_SIZE (`maxSize` here) and
   * CACHE_INACTIVE (`inactiveMs`). Without it (tests, tools) nothing is recorded or pruned.
   */
  cluster?: { replicaId: string, maxSize: number }
}

export async function openBucketCache (opts: BucketCacheOptions): Promise<CacheStore> {
  const local = await openCacheStore(opts)
  const bucket = opts.bucket ?? new S3Bucket(opts.s3, opts.bucketOptions)
  const keys = new CacheKeys(opts.s3.prefix)
  const log = opts.log
  const lock = opts.fillLock ?? new LocalFillLock()
  const batched = opts.cluster !== undefined && opts.readTimes === undefined
    ? new BatchedReadTimes({ bucket, keys, replicaId: opts.cluster.replicaId, log })
    : undefined
  const readTimes = opts.readTimes ?? batched ?? NO_READ_TIMES
  const janitor = opts.cluster !== undefined
    ? new BucketJanitor({ bucket, keys, fillLock: lock, replicaId: opts.cluster.replicaId, maxSize: opts.cluster.maxSize, inactiveMs: opts.inactiveMs, fillLockKey: blobFillKey, log: log.child({ module: 'bucket-janitor' }) })
    : undefined
  janitor?.start()
  const blobs = new BucketBlobStore({
    bucket,
    keys,
    local: local.blobs,
    lock,
    readTimes,
    follow: { ...DEFAULT_FOLLOW, ...(opts.idleTimeoutMs !== undefined && opts.idleTimeoutMs > 0 ? { stallMs: opts.idleTimeoutMs } : {}), ...opts.follow },
    log,
    writerHook: opts.writerHook,
  })
  return {
    dir: local.dir,
    blobs,
    manifests: new BucketManifestStore(bucket, keys, local.manifests, readTimes, log),
    tags: new BucketTagStore(bucket, keys, local.tags, log),
    stats: () => local.stats(),
    purgeInactive: () => { local.purgeInactive() },
    close: async () => {
      await local.close()
      // Copies still publishing finish (a verified blob is worth keeping); failed fills end theirs.
      await blobs.fillsSettled()
      await janitor?.close()
      await batched?.close()
      if (opts.bucket === undefined) bucket.destroy()
    },
  }
}
