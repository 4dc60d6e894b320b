/**
 * The object-store backend of the hosted registry (STORAGE=s3): the four stores over one bucket
 * (S3Objects; key layout in storage-keys.ts) with the bucket's own upload bytes
 * (s3-upload-bytes.ts) and content clock (below), a readiness probe, and the purge of stale upload
 * sessions. `openS3Storage` checks the bucket and the credentials first, so a wrong one is one
 * line before anything listens.
 */
import type { S3Config } from '../../config/index.js'
import { ConfigError } from '../../errors.js'
import type { RegistryBackend, StoredBlob } from './stores.js'
import { S3Bucket, type ObjectInfo, type S3BucketOptions } from '../../objects/s3-bucket.js'
import { S3Objects } from '../../objects/s3-objects.js'
import type { Digest } from '../../oci/digest.js'
import { StorageKeys } from './storage-keys.js'
import { ObjectBlobStore, type ContentClock } from './object-blob-store.js'
import { ObjectManifestStore } from './object-manifest-store.js'
import { ObjectTagStore } from './object-tag-store.js'
import { ObjectUploadStore } from './object-upload-store.js'
import { S3UploadBytes } from './s3-upload-bytes.js'

export interface S3Storage extends RegistryBackend {
  keys: StorageKeys
  blobs: ObjectBlobStore
  /** Undefined when the bucket answers; otherwise the reason, one line (readiness). */
  check: () => Promise<string | undefined>
  close: () => void
}

/** The stores over `config`'s bucket; `bucket` replaces the SDK client (tests inject failures). */
export function createS3Storage (config: S3Config, opts: S3BucketOptions = {}, bucket = new S3Bucket(config, opts)): S3Storage {
  const keys = new StorageKeys(config.prefix)
  const objects = new S3Objects(bucket)
  const blobs = new ObjectBlobStore(objects, keys, new S3ContentClock(bucket, keys))
  const uploads = new ObjectUploadStore(objects, keys, blobs, new S3UploadBytes(bucket, keys))
  return {
    keys,
    blobs,
    manifests: new ObjectManifestStore(objects, keys, blobs),
    tags: new ObjectTagStore(objects, keys),
    uploads,
    check: async () => await bucket.check(),
    // No tmp files: a multipart upload left by a crash is invisible (the bucket's lifecycle rule
    // AbortIncompleteMultipartUpload clears it).
    purge: async (olderThan) => ({ uploads: await uploads.purge(olderThan), tmpFiles: 0 }),
    close: () => bucket.destroy(),
  }
}

/** createS3Storage, then the bucket must answer: a ConfigError (one line, no secret) when it does not. */
export async function openS3Storage (config: S3Config, opts: S3BucketOptions = {}): Promise<S3Storage> {
  const storage = createS3Storage(config, opts)
  const reason = await storage.check()
  if (reason !== undefined) {
    storage.close()
    const where = config.endpoint !== undefined ? ` at ${config.endpoint.origin}` : ''
    throw new ConfigError(`STORAGE=s3: cannot use S3_BUCKET=${JSON.stringify(config.bucket)}${where}: ${reason}; expected an existing bucket that S3_ACCESS_KEY_ID may read and write`)
  }
  return storage
}

/**
 * "Last written or retained" is the later of the blob's own LastModified and its retained/
 * marker's: S3 cannot change an object's time without rewriting it.
 */
export class S3ContentClock implements ContentClock {
  constructor (private readonly bucket: S3Bucket, private readonly keys: StorageKeys) {}

  async retain (digest: Digest): Promise<number | undefined> {
    const o = await this.bucket.head(this.keys.blob(digest))
    if (o !== undefined) await this.bucket.put(this.keys.retained(digest), '')
    return o?.size
  }

  /**
   * Two listings walked side by side, not a HEAD per blob: blobs/<alg>/<hex[0:2]>/<hex> and
   * retained/<alg>/<hex> both come in <alg>, <hex> order (ListObjectsV2 sorts keys), so each
   * blob meets its marker, if any, without holding either listing in memory.
   */
  async * list (): AsyncIterable<StoredBlob> {
    const markers = this.bucket.list(this.keys.retainedPrefix)[Symbol.asyncIterator]()
    let marker = await this.nextMarker(markers)
    for await (const o of this.bucket.list(this.keys.blobsPrefix)) {
      const digest = this.keys.digestOfBlobKey(o.key)
      if (digest === undefined) continue // not ours: never touched
      while (marker !== undefined && marker.digest.value < digest.value) marker = await this.nextMarker(markers)
      const retainedAt = marker?.digest.value === digest.value ? marker.lastModified : 0
      yield { digest, size: o.size, modifiedAt: Math.max(o.lastModified, retainedAt) }
    }
  }

  /**
   * S3 has no compare-and-delete across two keys, so unlike the directory's this is not atomic
   * against a concurrent `retain`: a push that retains the blob between our look and our delete
   * loses it (its manifest PUT then fails on the next stat).
   */
  async remove (digest: Digest, keepIfModifiedSince: number): Promise<boolean> {
    const key = this.keys.blob(digest)
    const [content, marker] = await Promise.all([this.bucket.head(key), this.bucket.head(this.keys.retained(digest))])
    if (content === undefined) return false
    if (Math.max(content.lastModified, marker?.lastModified ?? 0) >= keepIfModifiedSince) return false
    await this.bucket.delete(key)
    await this.bucket.delete(this.keys.retained(digest))
    return true
  }

  private async nextMarker (markers: AsyncIterator<ObjectInfo>): Promise<{ digest: Digest, lastModified: number } | undefined> {
    for (;;) {
      const r = await markers.next()
      if (r.done === true) return undefined
      const digest = this.keys.digestOfRetainedKey(r.value.key)
      if (digest !== undefined) return { digest, lastModified: r.value.lastModified }
    }
  }
}
