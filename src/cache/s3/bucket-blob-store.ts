/**
 * Cached blobs with STORAGE=s3 (CacheBlobStore, stores.ts): this replica's cacache store as the
 * local tier (LOCAL_CACHE_MAX_SIZE, warm hits as fast as without a bucket) in front of the bucket's
 * `cache/blobs/` shared by every replica. One upstream fetch per digest cluster-wide:
 *
 *   openOrFill(digest, fetch) ─► local tier (cacache single-flight, blob-opener.ts)
 *     cached locally / local fill in flight ─────────────────────────────────► as without a bucket
 *     local miss, one asker per replica runs `bucketFetch` instead of `fetch`:
 *       blobs/<d> exists ─► body: GET of it ─────────────────► local fill    { fill, leader: false, hit: true }
 *       else lock.elect('blob:<d>')
 *         follower ─► body: the leader's parts (bucket-fill-follower.ts) ─► local fill  { fill, leader: false }
 *                     (the leader gone before its meta.json: elect again, up to ELECTIONS times)
 *         leader ───► fetch() upstream ─► local fill ─► BucketFillWriter    { fill, leader: true }
 *                                         (parts, verify, publish blobs/<d>)
 *       the bucket does not answer ─► fetch() upstream, this replica only (nothing shared; logged)
 *
 * Access is per replica: each replica asks the upstream itself. Bucket content is content only, and
 * a fill fed from the bucket is handed out with `leader: false`, so the pull-through checks access
 * (access-policy.ts canServe) exactly as for a local hit: only an asker whose own upstream fetch
 * answered 200 skips it.
 *
 * A blob the local tier will not take (larger than LOCAL_CACHE_MAX_SIZE, no room) is not read from
 * the bucket: the asker goes upstream (`unshared`), as the cacache store answers a bypass.
 */
import type { FileHandle } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import type { Logger } from '../../log.js'
import { OciError } from '../../errors.js'
import type { S3Bucket } from '../../objects/s3-bucket.js'
import type { FillLease, FillLock } from '../../cluster/fill-lock.js'
import type { Digest } from '../../oci/digest.js'
import { BlobFillError, type BlobFill } from '../blob-fill.js'
import type { BeginFillResult, BlobSource, CacheBlobStore, CachedBlob, CacheOrigin, FetchedBlob, FillOptions } from '../stores.js'
import type { CacheKeys } from './cache-keys.js'
import type { ReadTimes } from './read-times.js'
import { BucketFillWriter, type BucketFillHook } from './bucket-fill-writer.js'
import { awaitFillMeta, followFill, type FollowOptions, type FollowTarget } from './bucket-fill-follower.js'

export interface BucketBlobStoreOptions {
  bucket: S3Bucket
  keys: CacheKeys
  /** The local tier (cacache, LOCAL_CACHE_MAX_SIZE). */
  local: CacheBlobStore
  lock: FillLock
  readTimes: ReadTimes
  follow: FollowOptions
  log: Logger
  /** Test hook: awaited at each step of every copy into the bucket. */
  writerHook?: BucketFillHook
}

/** Elections one local miss takes part in at most: each one after the first follows a leader that left without writing. */
const ELECTIONS = 3

/** The answer of a fill fed from the bucket: there was no upstream answer. */
const FROM_BUCKET: unique symbol = Symbol('from the bucket')
type FromBucket = typeof FROM_BUCKET

export class BucketBlobStore implements CacheBlobStore {
  private readonly writers = new Set<Promise<boolean>>()
  private unleased = 0

  constructor (private readonly opts: BucketBlobStoreOptions) {}

  stat (digest: Digest): CachedBlob | undefined {
    return this.opts.local.stat(digest)
  }

  async head (digest: Digest): Promise<CachedBlob | undefined> {
    const local = this.opts.local.stat(digest)
    if (local !== undefined) return local
    // The published object only: a fill's parts are not the blob yet.
    const info = await this.opts.bucket.head(this.opts.keys.blob(digest)).catch(err => {
      if (!(err instanceof OciError)) throw err
      return undefined
    })
    return info === undefined ? undefined : { digest, size: info.size, mediaType: info.contentType }
  }

  async open (digest: Digest): Promise<{ blob: CachedBlob, fh: FileHandle } | undefined> {
    const opened = await this.opts.local.open(digest)
    if (opened !== undefined) this.opts.readTimes.recordRead(digest, Date.now())
    return opened
  }

  inflight (digest: Digest): BlobFill | undefined {
    return this.opts.local.inflight(digest)
  }

  async openOrFill<A> (digest: Digest, fetch: () => Promise<FetchedBlob<A>>): Promise<BlobSource<A>> {
    let from: 'bucket' | 'upstream' | undefined
    let whole = false
    let lease: FillLease | undefined
    let origin: CacheOrigin | undefined
    let bucketBody: Readable | undefined
    const bucketFetch = async (): Promise<FetchedBlob<A | FromBucket>> => {
      const shared = await this.fromBucket(digest).catch(err => {
        if (!(err instanceof OciError)) throw err
        this.opts.log.warn({ digest: digest.value, err: err.message }, 'bucket unavailable: blob filled from the upstream for this replica only')
        return undefined
      })
      if (shared !== undefined && 'body' in shared) {
        const { published, ...fill } = shared
        from = 'bucket'
        whole = published
        bucketBody = fill.body
        return { answer: FROM_BUCKET, fill }
      }
      from = 'upstream'
      await lease?.release() // a second look of the same asker (the item moved): one lease at a time
      lease = shared?.lease
      try {
        const fetched = await fetch()
        origin = fetched.fill?.origin
        return fetched
      } catch (err) {
        await lease?.release()
        lease = undefined
        throw err
      }
    }
    const source = await this.opts.local.openOrFill<A | FromBucket>(digest, bucketFetch)
    if (from === 'upstream' && lease !== undefined) {
      if (source.kind === 'fill' && source.leader) await this.copyToBucket(source.fill, lease, origin)
      else await lease.release()
    }
    if (source.kind === 'cached') this.opts.readTimes.recordRead(digest, Date.now())
    if (from === 'bucket') {
      if (source.kind === 'fill' && source.leader) {
        this.opts.readTimes.recordRead(digest, Date.now())
        // The published blob is a hit of the shared tier; the leader's parts are a fill in flight.
        return { ...source, leader: false, ...(whole ? { hit: true } : {}) }
      }
      // The local tier did not take it (bypass): the body is still ours, and not an answer to send.
      if (source.kind === 'bypass' || source.kind === 'answer') { bucketBody?.destroy(); return { kind: 'unshared' } }
    }
    return source as BlobSource<A>
  }

  /**
   * Starts a local fill (the contract's beginFill: imports, tests) and copies it into the bucket
   * once verified, under a token of its own: nobody follows it, but every replica can then read it.
   */
  beginFill (digest: Digest, body: Readable, opts: FillOptions = {}): BeginFillResult {
    const started = this.opts.local.beginFill(digest, body, opts)
    if ('fill' in started) {
      const token = `direct-${process.pid}-${Date.now().toString(36)}-${++this.unleased}`
      void this.copyToBucket(started.fill, { token, held: () => true, release: async () => {} }, opts.origin)
    }
    return started
  }

  fillsInFlight (): Array<{ digest: string, written: number, expectedSize?: number, readers: number }> {
    return this.opts.local.fillsInFlight()
  }

  /** Local fills and their copies into the bucket (a copy outlives its fill by the publish). */
  async fillsSettled (): Promise<void> {
    await this.opts.local.fillsSettled()
    while (this.writers.size > 0) await Promise.allSettled([...this.writers])
  }

  /**
   * The bucket's answer to a local miss: a body to fill from (the published blob, or the leader's
   * parts: `published` says which), or this replica's lease to fetch upstream. Throws OciError
   * UNAVAILABLE when the bucket does not answer.
   */
  private async fromBucket (digest: Digest): Promise<({ body: Readable, published: boolean } & FillOptions) | { lease: FillLease }> {
    const { bucket, keys, lock } = this.opts
    const published = await this.published(digest)
    if (published !== undefined) return published
    const key = blobFillKey(digest)
    for (let round = 1; ; round++) {
      const election = await lock.elect(key)
      if (election.role === 'leader') return { lease: election.lease }
      const target: FollowTarget = { bucket, keys, lock, key, digest, token: election.token, opts: this.opts.follow }
      let meta
      try {
        meta = await awaitFillMeta(target)
      } catch (err) {
        // A leader gone before it wrote anything (its upstream did not answer 200, the blob did not
        // fit its local tier, it died): nobody is filling, so elect again rather than fail.
        if (round < ELECTIONS && err instanceof BlobFillError && err.code === 'ERR_FILL_LEADER_GONE') continue
        throw err
      }
      if (meta === 'published') {
        const now = await this.published(digest)
        if (now === undefined) throw new OciError('UNAVAILABLE', `blob ${digest.value}: published to the bucket and gone again`)
        return now
      }
      this.opts.log.debug({ digest: digest.value, leader: election.token }, 'blob followed from the bucket while another replica fills it')
      return { body: followFill(target, meta), published: false, expectedSize: meta.size, mediaType: meta.mediaType, origin: meta.origin }
    }
  }

  private async published (digest: Digest): Promise<({ body: Readable, published: true } & FillOptions) | undefined> {
    const { bucket, keys } = this.opts
    const head = await bucket.head(keys.blob(digest))
    if (head === undefined) return undefined
    const got = await bucket.getStream(keys.blob(digest))
    if (got === undefined) return undefined
    const meta = head.metadata ?? {}
    const origin = meta['origin-host'] !== undefined && meta['origin-repository'] !== undefined ? { host: meta['origin-host'], repository: meta['origin-repository'] } : undefined
    return { body: got.stream, published: true, expectedSize: head.size, mediaType: head.contentType, origin }
  }

  private async copyToBucket (fill: BlobFill, lease: FillLease, origin: CacheOrigin | undefined): Promise<void> {
    const handle = await fill.acquire().catch(() => undefined)
    if (handle === undefined) { await lease.release(); return }
    const { bucket, keys, log, writerHook } = this.opts
    const done = new BucketFillWriter({ bucket, keys, fill, handle, lease, origin, log, hook: writerHook }).done
    this.writers.add(done)
    void done.finally(() => this.writers.delete(done))
  }
}

/** The fill lock's key for a blob: what replicas elect on, and what the janitor asks about a fill. */
export function blobFillKey (digest: Digest): string {
  return `blob:${digest.value}`
}
