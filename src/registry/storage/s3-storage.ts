/**
 * The object-store backend of the hosted registry (STORAGE=s3): the four stores over one bucket
 * (S3Objects; key layout in storage-keys.ts) with the bucket's own upload bytes
 * (s3-upload-bytes.ts) and content clock (s3-content-clock.ts), a readiness probe, and the purge of stale upload
 * sessions. `openS3Storage` checks the bucket and the credentials first, so a wrong one is one
 * line before anything listens.
 */
import type { S3Config } from '../../config/index.js'
import { ConfigError } from '../../errors.js'
import type { RegistryBackend } from './stores.js'
import { S3Bucket, type S3BucketOptions } from '../../objects/s3-bucket.js'
import { S3Objects } from '../../objects/s3-objects.js'
import { StorageKeys } from './storage-keys.js'
import { ObjectBlobStore } from './object-blob-store.js'
import { S3ContentClock } from './s3-content-clock.js'
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
