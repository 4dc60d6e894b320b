/**
 * The object-store backend of the hosted registry (STORAGE=s3): the four stores over one bucket
 * (layout in s3-keys.ts), a readiness probe, and the purge of stale upload sessions. `openS3Storage`
 * checks the bucket and the credentials first, so a wrong one is one line before anything listens.
 */
import type { S3Config } from '../../config/index.js'
import { ConfigError } from '../../errors.js'
import type { RegistryBackend } from '../../registry/storage/stores.js'
import { S3Bucket, type S3BucketOptions } from '../../objects/s3-bucket.js'
import { S3Keys } from './s3-keys.js'
import { S3BlobStore } from './s3-blob-store.js'
import { S3ManifestStore } from './s3-manifest-store.js'
import { S3TagStore } from './s3-tag-store.js'
import { S3UploadStore } from './s3-upload-store.js'

export interface S3Storage extends RegistryBackend {
  keys: S3Keys
  /** Undefined when the bucket answers; otherwise the reason, one line (readiness). */
  check: () => Promise<string | undefined>
  close: () => void
}

export function createS3Storage (config: S3Config, opts: S3BucketOptions = {}): S3Storage {
  const bucket = new S3Bucket(config, opts)
  const keys = new S3Keys(config.prefix)
  const blobs = new S3BlobStore(bucket, keys)
  const uploads = new S3UploadStore(bucket, keys, blobs)
  return {
    keys,
    blobs,
    manifests: new S3ManifestStore(bucket, keys, blobs),
    tags: new S3TagStore(bucket, keys),
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
