/**
 * What `crossdock cache ls|prune|verify` need of a cache, whichever holds it: the directory
 * (CACHE_DIR, cache-index.ts) or the bucket (STORAGE=s3, bucket-cache-view.ts). The commands
 * (cache.ts) decide and print the same way over either.
 */
import type { Readable } from 'node:stream'
import type { Digest } from '../oci/digest.js'

export interface CacheViewEntry {
  /** The index key (directory) or object key (bucket). */
  key: string
  kind: 'blob' | 'manifest' | 'tag'
  /** The content's digest (for a tag: the manifest it points at). */
  digest: Digest
  /** Bytes stored; 0 for a tag record. */
  size: number
  /** Last read, else when it was written; ms since the epoch. */
  lastReadAt: number
  /** Upstream host and repository it was first fetched for, when known. */
  host?: string
  repository?: string
}

export interface CacheView<E extends CacheViewEntry = CacheViewEntry> {
  /** Where the cache is, as `cache:` prints it (a directory, or s3://bucket/prefix/cache/). */
  readonly where: string
  /** What "missing" means for `verify`: content file missing / content object missing. */
  readonly missing: string
  entries: () => Promise<E[]>
  /** Tag records kept apart from entries() (the bucket's: counted by ls, never pruned); absent: none. */
  tagRecords?: () => Promise<number>
  /** Fills in host/repository where the listing did not carry them (the bucket: a HEAD each). */
  origins: (entries: E[]) => Promise<void>
  /** Removes `doomed` (some of `all`); idempotent. */
  remove: (doomed: E[], all: E[]) => Promise<void>
  /** Entries sharing one stored content, to be hashed once (tags excluded). */
  contents: (entries: E[]) => E[][]
  /** The stored bytes of an entry's content; undefined when missing. */
  open: (e: E) => Promise<Readable | undefined>
}
