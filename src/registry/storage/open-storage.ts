/**
 * The hosted registry's backend as STORAGE chose it: the directory (fs-storage.ts) or the bucket
 * (s3-storage.ts). Opened once by the composition root; a bucket that does not answer is a
 * ConfigError before anything listens.
 */
import type { StorageConfig } from '../../config/index.js'
import type { RegistryBackend } from './stores.js'
import { createFsStorage } from './fs-storage.js'
import type { S3BucketOptions } from '../../objects/s3-bucket.js'

export interface HostedStorage extends RegistryBackend {
  kind: 'fs' | 's3'
  /** Readiness beyond a directory's: undefined when the backend answers, else the reason. */
  check: () => Promise<string | undefined>
  close: () => void
}

export async function openRegistryStorage (storage: StorageConfig, registryStorageDir: string, bucket: S3BucketOptions = {}): Promise<HostedStorage> {
  if (storage.kind === 's3') {
    // Loaded only when chosen: the AWS SDK alone is ~23 MiB of RSS in every process (issue 20's
    // 200 MiB peak), and most installations keep their registry in a directory.
    const { openS3Storage } = await import('./s3-storage.js')
    return { kind: 's3', ...await openS3Storage(storage, bucket) }
  }
  const fs = await createFsStorage(registryStorageDir)
  return { kind: 'fs', ...fs, check: async () => undefined, close: () => {} }
}
