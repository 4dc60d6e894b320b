/**
 * The hosted registry's backend as STORAGE chose it: the directory (fs-storage.ts) or the bucket
 * (s3-storage.ts). Opened once by the composition root; a bucket that does not answer is a
 * ConfigError before anything listens.
 */
import type { StorageConfig } from '../../config/index.js'
import type { RegistryBackend } from './stores.js'
import { createFsStorage } from './fs-storage.js'
import type { S3Bucket, S3BucketOptions } from '../../objects/s3-bucket.js'

export interface HostedStorage extends RegistryBackend {
  kind: 'fs' | 's3'
  /** Readiness beyond a directory's: undefined when the backend answers, else the reason. */
  check: () => Promise<string | undefined>
  /** Releases what the storage opened itself; a bucket passed in is left to its owner. */
  close: () => void
}

/**
 * With STORAGE=s3, `bucket` is a client the caller opened (openS3Bucket: checked) and destroys: the
 * app shares one with the cache. Without it (the CLI) the storage opens and checks its own, with
 * `bucketOptions`, and destroys it on close.
 */
export async function openRegistryStorage (storage: StorageConfig, registryStorageDir: string, bucketOptions: S3BucketOptions = {}, bucket?: S3Bucket): Promise<HostedStorage> {
  if (storage.kind === 's3') {
    // Loaded only when chosen: the AWS SDK alone is ~23 MiB of RSS in every process (issue 20's
    // 200 MiB peak), and most installations keep their registry in a directory.
    const [{ createS3Storage }, { openS3Bucket }] = await Promise.all([import('./s3-storage.js'), import('../../objects/s3-bucket.js')])
    const client = bucket ?? await openS3Bucket(storage, bucketOptions)
    const backend = createS3Storage(storage, {}, client)
    return { kind: 's3', ...backend, close: bucket === undefined ? () => { client.destroy() } : backend.close }
  }
  const fs = await createFsStorage(registryStorageDir)
  return { kind: 'fs', ...fs, check: async () => undefined, close: () => {} }
}
