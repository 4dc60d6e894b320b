/**
 * Cached manifests in the cacache directory (CacheManifestStore, stores.ts): written with
 * `cacache.put` (small, read whole), keyed `manifest:<digest>`, the media type in the index metadata.
 */
import { readFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import cacache from 'cacache'
import type { Digest } from '../oci/digest.js'
import { contentPath, integrityOf, manifestKey } from './cache-paths.js'
import type { CacacheEntries } from './cacache-entries.js'
import type { CacheManifestStore, CachedManifest, CacheOrigin } from './stores.js'

/** Manifests above this are not cached (distribution refuses manifests over 4 MiB). */
export const MAX_MANIFEST_BYTES = 16 << 20

export class CacacheManifestStore implements CacheManifestStore {
  constructor (private readonly entries: CacacheEntries) {}

  has (digest: Digest): boolean {
    return this.entries.bound.peek(manifestKey(digest)) !== undefined
  }

  async get (digest: Digest): Promise<CachedManifest | undefined> {
    const e = this.entries.bound.get(manifestKey(digest))
    if (e === undefined) return undefined
    try {
      return { digest, mediaType: e.mediaType ?? 'application/octet-stream', bytes: await readFile(e.path) }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      this.entries.bound.delete(manifestKey(digest))
      return undefined
    }
  }

  async put (digest: Digest, bytes: Buffer, mediaType: string, origin?: CacheOrigin): Promise<boolean> {
    const { entries } = this
    if (bytes.length > MAX_MANIFEST_BYTES) return false
    if (createHash(digest.algorithm).update(bytes).digest('hex') !== digest.hex) return false
    const key = manifestKey(digest)
    if (entries.bound.peek(key) !== undefined) return true
    await entries.settledRemovals(key, `content:${digest.value}`)
    // cacache hashes what it writes: one algorithm, the digest's own.
    await cacache.put(entries.dir, key, bytes, { algorithms: [digest.algorithm], integrity: integrityOf(digest), size: bytes.length, metadata: { digest: digest.value, mediaType, ...origin } })
    return entries.bound.add(key, { kind: 'manifest', digest, size: bytes.length, path: contentPath(entries.dir, digest), mediaType, lastReadAt: entries.now() })
  }
}
