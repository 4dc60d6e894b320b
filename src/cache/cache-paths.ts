/**
 * Every on-disk path of the pull-through cache is built here, after the digest has been validated
 * (which is also the path-traversal defence: only `[a-f0-9]` reaches a path segment).
 *
 *   CACHE_DIR/
 *   ├── content-v2/                      cacache's content store (we write into it by rename)
 *   │   ├── sha256/<2 hex>/<2 hex>/<60 hex>
 *   │   └── sha512/<2 hex>/<2 hex>/<124 hex>
 *   ├── index-v5/<2>/<2>/<sha256(key)>   cacache's index buckets, one per cache key (append-only)
 *   ├── tmp/                             cacache's temp dir; everything in it is swept at start
 *   │   └── staging-XXXXXX/              this process's staging dir (cacache.tmp.mkdir)
 *   │       └── sha256-<hex>             one staging file per in-flight blob digest
 *   └── crossdock-recency.json           last read time per cache key (see lru-bound.ts)
 *
 * Cache keys (the `key` of cacache's index):
 *   blob:<digest>                 a layer or config blob, shared by every repository and upstream
 *   manifest:<digest>             a manifest by digest, same sharing; metadata carries mediaType
 *   tag:<host>/<repository>:<tag>#<accept>   a tag record → digest (see tagKey in tag-key.ts)
 */
import { join } from 'node:path'
import type { Digest } from '../oci/digest.js'

/** The SRI string cacache indexes content by (`sha256-<base64>`). */
export function integrityOf (d: Digest): string {
  return `${d.algorithm}-${Buffer.from(d.hex, 'hex').toString('base64')}`
}

/**
 * Where cacache keeps the content of `d`: content/path.js joins `content-v2`, the algorithm and
 * hash-to-segments(hex) = [hex[0..2], hex[2..4], hex[4..]]. A unit test pins this to what
 * `cacache.get.info(...).path` reports, so a cacache upgrade cannot silently move it.
 */
export function contentPath (cacheDir: string, d: Digest): string {
  return join(cacheDir, 'content-v2', d.algorithm, d.hex.slice(0, 2), d.hex.slice(2, 4), d.hex.slice(4))
}

export function contentDir (cacheDir: string): string {
  return join(cacheDir, 'content-v2')
}

/** cacache's temp dir (`cacache.tmp.mkdir` creates dirs inside it); swept at start. */
export function tmpDir (cacheDir: string): string {
  return join(cacheDir, 'tmp')
}

export function stagingPath (stagingDir: string, d: Digest): string {
  return join(stagingDir, `${d.algorithm}-${d.hex}`)
}

export function recencyPath (cacheDir: string): string {
  return join(cacheDir, 'crossdock-recency.json')
}

export function blobKey (d: Digest): string {
  return `blob:${d.value}`
}

export function manifestKey (d: Digest): string {
  return `manifest:${d.value}`
}
