/**
 * The object-store backend of the hosted registry (STORAGE=s3): the four stores over one bucket
 * (S3Objects; key layout in storage-keys.ts) with the bucket's own upload bytes
 * (s3-upload-bytes.ts) and content clock (s3-content-clock.ts), a readiness probe, and the purge of stale upload
 * sessions. The bucket is checked by whoever opens it (openS3Bucket, open-storage.ts), so a wrong
 * one is one line before anything listens.
 */
import type { S3Config } from '../../config/index.js'
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
  /** Destroys the bucket client if this storage made it; a `bucket` passed in stays its owner's. */
  close: () => void
}

/**
 * The stores over `config`'s bucket. `bucket`: a client the caller owns (the app shares one with
 * the cache; tests inject failures); without it the storage makes its own.
 */
export function createS3Storage (config: S3Config, opts: S3BucketOptions = {}, bucket?: S3Bucket): S3Storage {
  const client = bucket ?? new S3Bucket(config, opts)
  return { ...storageOver(config, client), close: () => { if (bucket === undefined) client.destroy() } }
}

function storageOver (config: S3Config, bucket: S3Bucket): Omit<S3Storage, 'close'> {
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
  }
}
