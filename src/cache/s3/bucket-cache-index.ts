/**
 * The bucket cache as its housekeeping sees it (the janitor, `crossdock cache ls|prune|verify` with
 * STORAGE=s3): what blobs/ and manifests/ hold, and when each was last read.
 *
 *   atimes/<replica>/<ms>-<n>.json ──readReadTimes──► digest → last read (the max over every batch)
 *   blobs/, manifests/ (ListObjectsV2) ──listBucketCache──► BucketEntry, lastReadAt =
 *                                                           max(LastModified, last read recorded)
 *
 * Listing costs one request per 1000 objects and no HEAD: sizes and times come from the listing.
 * A batch that is not JSON of {digest: ms} is reported in `unreadable` (the janitor deletes it) and
 * contributes nothing. Keys that are not ours (another layout, a stray upload) are skipped.
 */
import type { S3Bucket } from '../../objects/s3-bucket.js'
import { tryParseDigest, type Digest } from '../../oci/digest.js'
import type { CacheKeys } from './cache-keys.js'

export interface BucketEntry {
  key: string
  kind: 'blob' | 'manifest'
  digest: Digest
  size: number
  /** The object's LastModified: its publish (ms, whole seconds). */
  lastModified: number
  /** max(lastModified, the latest read recorded in atimes/). */
  lastReadAt: number
}

export interface ReadTimeBatches {
  /** Every batch read, folded or not (the janitor deletes them once their reads are kept elsewhere). */
  keys: string[]
  /** Batches that were not valid: listed in `keys` too. */
  unreadable: string[]
  /** digest value → latest read, ms since the epoch. */
  reads: Map<string, number>
}

/** Reads every atimes/ batch (one GET each) and folds them: the latest read per digest. */
export async function readReadTimes (bucket: S3Bucket, keys: CacheKeys): Promise<ReadTimeBatches> {
  const out: ReadTimeBatches = { keys: [], unreadable: [], reads: new Map() }
  for await (const o of bucket.list(keys.atimesPrefix)) {
    const bytes = await bucket.getBytes(o.key)
    if (bytes === undefined) continue
    out.keys.push(o.key)
    const batch = parseBatch(bytes)
    if (batch === undefined) { out.unreadable.push(o.key); continue }
    for (const [digest, at] of batch) {
      if ((out.reads.get(digest) ?? -Infinity) < at) out.reads.set(digest, at)
    }
  }
  return out
}

/** Every blob and manifest in the bucket, with its last read (`reads` from readReadTimes). */
export async function listBucketCache (bucket: S3Bucket, keys: CacheKeys, reads: ReadonlyMap<string, number> = new Map()): Promise<BucketEntry[]> {
  const out: BucketEntry[] = []
  const kinds = [
    { kind: 'blob' as const, prefix: keys.blobsPrefix, digestOf: (k: string) => keys.digestOfBlobKey(k) },
    { kind: 'manifest' as const, prefix: keys.manifestsPrefix, digestOf: (k: string) => keys.digestOfManifestKey(k) },
  ]
  for (const { kind, prefix, digestOf } of kinds) {
    for await (const o of bucket.list(prefix)) {
      const digest = digestOf(o.key)
      if (digest === undefined) continue
      out.push({ key: o.key, kind, digest, size: o.size, lastModified: o.lastModified, lastReadAt: Math.max(o.lastModified, reads.get(digest.value) ?? 0) })
    }
  }
  return out
}

/** The JSON body of a batch: {"sha256:…": ms, …}. */
export function serializeBatch (reads: ReadonlyMap<string, number>): string {
  return JSON.stringify(Object.fromEntries(reads))
}

function parseBatch (bytes: Buffer): Array<[string, number]> | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(bytes.toString('utf8'))
  } catch {
    return undefined
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined
  const out: Array<[string, number]> = []
  for (const [k, v] of Object.entries(parsed)) {
    if (typeof v !== 'number' || !Number.isFinite(v) || tryParseDigest(k) === undefined) return undefined
    out.push([k, v])
  }
  return out
}
