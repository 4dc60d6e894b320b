/**
 * The embedded storage backend: the four stores over one directory (FsObjects; layout in
 * storage-keys.ts and paths.ts), with the directory's own upload bytes (fs-upload-bytes.ts) and
 * content clock (below), plus the housekeeping the directory needs (purging stale upload sessions
 * and leftover tmp/ files).
 */
import { promises as fsp } from 'node:fs'
import { join } from 'node:path'
import type { RegistryBackend, StoredBlob } from './stores.js'
import { StoragePaths } from './paths.js'
import { ObjectBlobStore, type ContentClock } from './object-blob-store.js'
import { ObjectManifestStore } from './object-manifest-store.js'
import { ObjectTagStore } from './object-tag-store.js'
import { ObjectUploadStore } from './object-upload-store.js'
import { FsUploadBytes } from './fs-upload-bytes.js'
import { DIGEST_ALGORITHMS, tryParseDigest, type Digest } from '../../oci/digest.js'
import { isNotFound, readdirIfExists, renameInto, statIfExists, unlinkIfExists } from '../../objects/fs-files.js'

export interface FsStorage extends RegistryBackend {
  paths: StoragePaths
}

export async function createFsStorage (root: string): Promise<FsStorage> {
  const paths = new StoragePaths(root)
  for (const dir of [paths.blobsDir, paths.repositoriesDir, paths.uploadsDir, paths.tmpDir]) await fsp.mkdir(dir, { recursive: true })
  const { objects, keys } = paths
  const blobs = new ObjectBlobStore(objects, keys, new FsContentClock(paths))
  const uploads = new ObjectUploadStore(objects, keys, blobs, new FsUploadBytes(paths))
  return {
    paths,
    blobs,
    manifests: new ObjectManifestStore(objects, keys, blobs),
    tags: new ObjectTagStore(objects, keys),
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

/**
 * The blob file's mtime is the "last written or retained" time gc compares against: commits and
 * `retain` touch it, and `remove` parks the file in tmp/ before looking at the mtime again, so a
 * push that retained the blob in between wins.
 */
export class FsContentClock implements ContentClock {
  constructor (private readonly paths: StoragePaths) {}

  async retain (digest: Digest): Promise<number | undefined> {
    const path = this.paths.blob(digest)
    const now = new Date()
    try {
      await fsp.utimes(path, now, now)
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw err
    }
    return (await statIfExists(path))?.size
  }

  async * list (): AsyncIterable<StoredBlob> {
    for (const algorithm of Object.keys(DIGEST_ALGORITHMS)) {
      const algDir = this.paths.blobAlgorithmDir(algorithm)
      for (const prefix of (await readdirIfExists(algDir)).sort()) {
        for (const hex of (await readdirIfExists(join(algDir, prefix))).sort()) {
          const digest = tryParseDigest(`${algorithm}:${hex}`)
          if (digest === undefined) continue // not ours (stray file): never touched
          const st = await statIfExists(this.paths.blob(digest))
          if (st?.isFile() === true) yield { digest, size: st.size, modifiedAt: st.mtimeMs }
        }
      }
    }
  }

  async remove (digest: Digest, keepIfModifiedSince: number): Promise<boolean> {
    const path = this.paths.blob(digest)
    const parked = this.paths.tmpFile('gc')
    try {
      await fsp.rename(path, parked)
    } catch (err) {
      if (isNotFound(err)) return false
      throw err
    }
    // The inode moved with the rename: a `retain` (utimes on the path) either happened before the
    // rename and shows here, or fails afterwards and its push reports the blob unknown.
    const st = await fsp.stat(parked)
    if (st.mtimeMs >= keepIfModifiedSince) {
      if (await statIfExists(path) === undefined) await renameInto(parked, path)
      else await unlinkIfExists(parked)
      return false
    }
    await unlinkIfExists(parked)
    await fsp.rmdir(join(path, '..')).catch(() => {}) // only when empty; a concurrent commit retries
    return true
  }
}
