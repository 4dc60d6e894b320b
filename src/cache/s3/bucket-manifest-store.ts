/**
 * Cached manifests with STORAGE=s3 (CacheManifestStore, stores.ts): written through to the bucket's
 * `cache/manifests/` (Content-Type: the media type), read from the local tier, else from the bucket
 * (hashed again before use, then kept locally).
 *
 * The bucket not answering costs only sharing: a read is a local miss (the pull-through asks the
 * upstream), a write stays local; both are logged.
 */
import { createHash } from 'node:crypto'
import type { Logger } from '../../log.js'
import type { S3Bucket } from '../../objects/s3-bucket.js'
import type { Digest } from '../../oci/digest.js'
import { MAX_MANIFEST_BYTES } from '../cacache-manifest-store.js'
import type { CachedManifest, CacheManifestStore, CacheOrigin } from '../stores.js'
import type { CacheKeys } from './cache-keys.js'
import { originMetadata } from './bucket-fill-writer.js'
import type { ReadTimes } from './read-times.js'

export class BucketManifestStore implements CacheManifestStore {
  constructor (private readonly bucket: S3Bucket, private readonly keys: CacheKeys, private readonly local: CacheManifestStore, private readonly readTimes: ReadTimes, private readonly log: Logger) {}

  /** This replica's tier only: a synchronous answer cannot ask the bucket. */
  has (digest: Digest): boolean {
    return this.local.has(digest)
  }

  async get (digest: Digest): Promise<CachedManifest | undefined> {
    const local = await this.local.get(digest)
    if (local !== undefined) { this.readTimes.recordRead(digest, Date.now()); return local }
    let got
    try {
      got = await this.bucket.getObject(this.keys.manifest(digest))
    } catch (err) {
      this.log.warn({ digest: digest.value, err: (err as Error).message }, 'bucket unavailable: manifest looked up in this replica\'s tier only')
      return undefined
    }
    if (got === undefined || !verified(digest, got.bytes)) return undefined
    const mediaType = got.contentType ?? 'application/octet-stream'
    await this.local.put(digest, got.bytes, mediaType)
    this.readTimes.recordRead(digest, Date.now())
    return { digest, mediaType, bytes: got.bytes }
  }

  async put (digest: Digest, bytes: Buffer, mediaType: string, origin?: CacheOrigin): Promise<boolean> {
    if (!verified(digest, bytes)) return false
    if (!await this.local.put(digest, bytes, mediaType, origin)) return false
    // Content by digest: an existing object holds these same bytes already (If-None-Match).
    await this.bucket.put(this.keys.manifest(digest), bytes, { ifNoneMatch: true, contentType: mediaType, metadata: originMetadata(origin) })
      .catch(err => { this.log.warn({ digest: digest.value, err: (err as Error).message }, 'manifest cached on this replica only: the bucket write failed') })
    return true
  }
}

function verified (digest: Digest, bytes: Buffer): boolean {
  return bytes.length <= MAX_MANIFEST_BYTES && createHash(digest.algorithm).update(bytes).digest('hex') === digest.hex
}
