/**
 * The embedded storage backend: the four stores over one directory (layout in paths.ts), plus the
 * housekeeping the directory needs (purging stale upload sessions and leftover tmp/ files).
 */
import { promises as fsp } from 'node:fs'
import { join } from 'node:path'
import type { RegistryBackend } from './stores.js'
import { StoragePaths } from './paths.js'
import { FsBlobStore } from './fs-blob-store.js'
import { FsManifestStore } from './fs-manifest-store.js'
import { FsTagStore } from './fs-tag-store.js'
import { FsUploadStore } from './fs-upload-store.js'
import { readdirIfExists, statIfExists, unlinkIfExists } from './fs-files.js'

export interface FsStorage extends RegistryBackend {
  paths: StoragePaths
}

export async function createFsStorage (root: string): Promise<FsStorage> {
  const paths = new StoragePaths(root)
  for (const dir of [paths.blobsDir, paths.repositoriesDir, paths.uploadsDir, paths.tmpDir]) await fsp.mkdir(dir, { recursive: true })
  const blobs = new FsBlobStore(paths)
  const uploads = new FsUploadStore(paths, blobs)
  return {
    paths,
    blobs,
    manifests: new FsManifestStore(paths, blobs),
    tags: new FsTagStore(paths),
    uploads,
    purge: async (olderThan) => {
      const purgedUploads = await uploads.purge(olderThan)
      let tmpFiles = 0
      for (const entry of await readdirIfExists(paths.tmpDir)) {
        const path = join(paths.tmpDir, entry)
        const st = await statIfExists(path)
        if (st !== undefined && st.mtimeMs < olderThan && await unlinkIfExists(path)) tmpFiles++
      }
      return { uploads: purgedUploads, tmpFiles }
    },
  }
}
