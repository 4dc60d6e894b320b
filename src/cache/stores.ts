/**
 * The pull-through cache's storage contracts: one interface per concern, as the hosted registry's
 * `registry/storage/stores.ts`. The mirror speaks only to these; `Cacache*` (a cacache directory,
 * CACHE_DIR) is the implementation, and test/contracts/ holds the suite any implementation passes.
 *
 * Common rules:
 * - "Missing" is `undefined` (or `false`), never an exception; exceptions are for I/O failures.
 * - Blobs and manifests are content, keyed by digest alone: one copy shared by every repository and
 *   upstream. Content is immutable; only tag records move.
 * - Digests arrive parsed (`Digest`, oci/digest.ts): only sha256/sha512 can be verified, so only
 *   those are ever cached.
 * - Every entry counts against one size bound (CACHE_MAX_SIZE) and expires unread (CACHE_INACTIVE):
 *   anything may vanish between two calls. A "get"/"stat"/"open" marks the entry as read.
 */
import type { FileHandle } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import type { Digest } from '../oci/digest.js'
import type { BlobFill, FillHandle } from './blob-fill.js'
import type { TagRecord, TagRef } from './tag-key.js'

export interface CachedBlob {
  digest: Digest
  size: number
  mediaType?: string
}

export interface CachedManifest {
  digest: Digest
  mediaType: string
  bytes: Buffer
}

/**
 * Where a cached item was first fetched from, kept with it so operators can see what the cache
 * holds (`crossdock cache ls`). Content is shared by digest: a blob later read through other
 * repositories keeps the first one.
 */
export interface CacheOrigin {
  host: string
  repository: string
}

export type BeginFillResult = { fill: BlobFill } | { bypass: string }

/** What a fetch brought back: an answer for the leader, and a body to cache when it is cacheable. */
export interface FetchedBlob<A> {
  answer: A
  fill?: { body: Readable } & FillOptions
}

/**
 * What `openOrFill` hands each asker: something to read now, or an upstream answer that was not
 * cached (blob-opener.ts draws who gets which). The caller owns what it is handed: it closes `fh`,
 * or gives `handle` to a TailReader (which releases it) or releases it itself.
 */
export type BlobSource<A> =
  | { kind: 'cached', blob: CachedBlob, fh: FileHandle }
  /**
   * `hit`: the fill copies a blob the cache already held whole in a shared tier (STORAGE=s3: the
   * bucket's published blob), not a download in flight: its asker is answered as a hit.
   */
  | { kind: 'fill', fill: BlobFill, leader: boolean, handle: FillHandle, hit?: boolean }
  | { kind: 'answer', answer: A }
  | { kind: 'bypass', answer: A, reason: string }
  | { kind: 'unshared' }
  /** The item kept moving (evicted, or committed and evicted again) at every look: nothing to read. */
  | { kind: 'moving' }

export interface FillOptions {
  /** The upstream's Content-Length: reserved in the bound up front; a body of another length fails. */
  expectedSize?: number
  mediaType?: string
  origin?: CacheOrigin
}

export interface CacheBlobStore {
  /** The cached blob (marking it read), or undefined. Does not open it. A manifest's bytes count as a blob too. */
  stat: (digest: Digest) => CachedBlob | undefined
  /**
   * The blob's size and media type if this cache holds it whole anywhere (a shared tier too: the
   * bucket's published blob), without reading it: what a HEAD needs. Undefined when missing, and
   * when a shared tier does not answer (the upstream answers the HEAD then).
   */
  head: (digest: Digest) => Promise<CachedBlob | undefined>
  /**
   * Opens a cached blob for reading. The caller owns the handle (a read stream made from it closes
   * it). An open handle keeps the bytes readable even if the entry is evicted meanwhile. Undefined
   * when not cached, or when its content vanished (the entry is then dropped).
   */
  open: (digest: Digest) => Promise<{ blob: CachedBlob, fh: FileHandle } | undefined>
  /**
   * The download of `digest` in flight, if any (join it with a TailReader). A fill that the full
   * disk turned into a pass-through, or that failed, is not joinable.
   */
  inflight: (digest: Digest) => BlobFill | undefined
  /**
   * A blob read in one question: the cached blob opened, or a share of the fill in flight to join,
   * or a new fill. A miss is single-flighted across every caller of this store (both doors): `fetch`
   * runs at most once for concurrent callers of one digest; see blob-opener.ts for what each caller
   * gets. An item that moves between the look-up and the read (evicted after the look-up, a fill
   * that settled and closed before a share of it was taken) is looked up again here, a bounded
   * number of times. Rejects with the fill's error when the fill to join has failed.
   */
  openOrFill: <A>(digest: Digest, fetch: () => Promise<FetchedBlob<A>>) => Promise<BlobSource<A>>
  /**
   * Starts filling `digest` from `body`. On `{ fill }` the fill owns `body` and the bytes become
   * visible to `stat`/`open` only once all of them hashed to `digest` (with the announced length);
   * a mismatch commits nothing. On `{ bypass }` (too large, no room, disk below CACHE_MIN_FREE) the
   * caller still owns `body`. Throws if a fill of `digest` is in flight (use `openOrFill`).
   */
  beginFill: (digest: Digest, body: Readable, opts?: FillOptions) => BeginFillResult
  /** Downloads in flight (status page): bytes on disk so far, the announced size, readers attached. */
  fillsInFlight: () => Array<{ digest: string, written: number, expectedSize?: number, readers: number }>
  /** Resolves once no fill is in flight, fills started meanwhile included (graceful shutdown). */
  fillsSettled: () => Promise<void>
}

export interface CacheManifestStore {
  /** Whether the manifest is cached; does not mark it read. */
  has: (digest: Digest) => boolean
  /** The cached manifest (marking it read), or undefined. */
  get: (digest: Digest) => Promise<CachedManifest | undefined>
  /**
   * Stores a manifest under its digest, visible to `get` once written whole. Returns false (storing
   * nothing) when `bytes` do not hash to `digest` or are larger than MAX_MANIFEST_BYTES. Idempotent.
   */
  put: (digest: Digest, bytes: Buffer, mediaType: string, origin?: CacheOrigin) => Promise<boolean>
}

export interface CacheTagStore {
  /** The last known resolution of a tag (marking it read), or undefined. This replica's own records only. */
  get: (ref: TagRef) => TagRecord | undefined
  /**
   * As `get`, but also asks the tiers a synchronous call cannot (the bucket shared by replicas,
   * STORAGE=s3) when this replica has no record; what it finds is then visible to `get`. Never
   * rejects: a tier that does not answer is a miss.
   */
  lookup: (ref: TagRef) => Promise<TagRecord | undefined>
  /**
   * Remembers a tag resolution, replacing the previous one whole; visible to `get` at once (before
   * the returned promise settles, which is when it is durable). A record whose digest cannot be
   * verified is ignored. A tag record never owns its manifest's content.
   */
  put: (ref: TagRef, record: TagRecord) => Promise<void>
}

export interface CacheStats {
  entries: number
  usedBytes: number
  reservedBytes: number
  inflight: number
  maxSize: number
  freeBytes: number
  evictions: number
  expirations: number
  fillsFailed: number
}

/** The cache as the composition root holds it: the three stores and the housekeeping of the whole. */
export interface CacheStore {
  readonly dir: string
  readonly blobs: CacheBlobStore
  readonly manifests: CacheManifestStore
  readonly tags: CacheTagStore
  stats: () => CacheStats
  /** Drops entries not read for CACHE_INACTIVE now (also done periodically). */
  purgeInactive: () => void
  /** Aborts fills in flight (nothing partial is committed), waits for removals, persists recency. */
  close: () => Promise<void>
}
