/**
 * Blobs on the local disk: bytes once per digest under blobs/, a link file per repository under
 * `_layers/`. The file's mtime is the "last written or retained" time gc compares against: commits
 * and `retain` touch it, and gc's `remove` parks the file in tmp/ before looking at the mtime again,
 * so a push that retained the blob in between wins (see `remove`).
 */
import { promises as fsp } from 'node:fs'
import { join } from 'node:path'
import type { Writable } from 'node:stream'
import type { ByteRange } from '../../oci/range.js'
import type { BlobInfo, BlobStore, StoredBlob } from './stores.js'
import { sendFile } from '../../util/file-sender.js'
import type { StoragePaths } from './paths.js'
import { DIGEST_ALGORITHMS, tryParseDigest, type Digest } from '../../oci/digest.js'
import { isNotFound, readdirIfExists, renameInto, statIfExists, unlinkIfExists, writeFileAtomic } from './fs-files.js'

export class FsBlobStore implements BlobStore {
  constructor (private readonly paths: StoragePaths) {}

  async stat (name: string, digest: Digest, opts: { retain?: boolean } = {}): Promise<BlobInfo | undefined> {
    if (await statIfExists(this.paths.layerLink(name, digest)) === undefined) return undefined
    return opts.retain === true ? await this.retainContent(digest) : await this.contentInfo(digest)
  }

  async send (digest: Digest, out: Writable, opts: { range?: ByteRange, ready?: () => void } = {}): Promise<boolean> {
    let handle
    try {
      handle = await fsp.open(this.paths.blob(digest), 'r') // held: gc unlinking the path cannot cut us short
    } catch (err) {
      if (isNotFound(err)) return false
      throw err
    }
    try {
      opts.ready?.()
      await sendFile(handle, out, opts.range)
      return true
    } finally {
      await handle.close()
    }
  }

  async link (name: string, digest: Digest): Promise<BlobInfo | undefined> {
    const info = await this.retainContent(digest)
    if (info === undefined) return undefined
    const link = this.paths.layerLink(name, digest)
    if (await statIfExists(link) === undefined) await writeFileAtomic(this.paths, link, digest.value)
    return info
  }

  async unlink (name: string, digest: Digest): Promise<boolean> {
    return await unlinkIfExists(this.paths.layerLink(name, digest))
  }

  /**
   * Moves a finished, verified file into place as the content of `digest` (the upload store's
   * commit). If the content already exists (a concurrent push of the same blob), ours is dropped
   * and theirs is kept: same bytes either way. Either way the content's mtime is now.
   */
  async adopt (file: string, digest: Digest): Promise<BlobInfo> {
    const existing = await this.retainContent(digest)
    if (existing !== undefined) {
      await unlinkIfExists(file)
      return existing
    }
    const now = new Date()
    await fsp.utimes(file, now, now)
    await renameInto(file, this.paths.blob(digest))
    const st = await fsp.stat(this.paths.blob(digest))
    return { digest: digest.value, size: st.size }
  }

  /** Writes small content (a manifest's bytes) once per digest; touches it when already there. */
  async putBytes (digest: Digest, bytes: Buffer): Promise<void> {
    if (await this.retainContent(digest) !== undefined) return
    await writeFileAtomic(this.paths, this.paths.blob(digest), bytes)
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

  private async contentInfo (digest: Digest): Promise<BlobInfo | undefined> {
    const st = await statIfExists(this.paths.blob(digest))
    return st === undefined ? undefined : { digest: digest.value, size: st.size }
  }

  private async retainContent (digest: Digest): Promise<BlobInfo | undefined> {
    const path = this.paths.blob(digest)
    const now = new Date()
    try {
      await fsp.utimes(path, now, now)
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw err
    }
    return await this.contentInfo(digest)
  }
}
