/**
 * The hosted registry's storage contracts. Handlers speak only to these four interfaces; the local
 * directory (`Fs*`) is the embedded implementation, and an object-store/Redis backend can implement
 * the same contracts later (design §10). Inputs have been validated by the caller (names.ts); an
 * implementation validates names again before touching storage. Digests arrive parsed (`Digest`,
 * oci/digest.ts): the handler parses the string once and every layer below passes the same value.
 *
 * Common rules:
 * - "Missing" is `undefined` (or `false`), never an exception. Exceptions are for I/O failures and
 *   for the OciErrors a method documents.
 * - Content is immutable and addressed by digest; only tags move. Writes of content and links are
 *   idempotent, and each becomes visible atomically (a reader sees all of it or nothing).
 * - Content is stored once per digest; repositories hold links to it. Whether a repository may see
 *   a blob is decided by its link, so a blob in repository A is unknown in B until mounted.
 */
import type { Readable, Writable } from 'node:stream'
import type { ByteRange } from '../../oci/range.js'
import type { Digest, DigestAlgorithm } from '../../oci/digest.js'

export interface BlobInfo {
  digest: string
  size: number
}

/** A stored blob as gc sees it: its digest parsed from the storage key, so it can be removed. */
export interface StoredBlob {
  digest: Digest
  size: number
  /** When it was last written or retained (epoch ms). */
  modifiedAt: number
}

/** An OCI descriptor as the referrers API and the manifest store return it. */
export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  artifactType?: string
  annotations?: Record<string, string>
}

export interface BlobStore {
  /**
   * The blob as repository `name` sees it: undefined unless the repository links it and the bytes
   * are present. With `retain`, also marks the content as in use now, so a garbage collection that
   * runs concurrently keeps it (call it for every blob a manifest being pushed references).
   */
  stat: (name: string, digest: Digest, opts?: { retain?: boolean }) => Promise<BlobInfo | undefined>
  /**
   * Writes the bytes (all, or an inclusive range) of a blob into `out` (a response), without ending
   * it; the implementation may recycle its buffers once `out` has written them. `ready` runs once the
   * content is open, before the first byte is written (the caller sends its headers there). Once
   * open, a concurrent delete does not cut the bytes short. False, with `ready` not called and
   * nothing written, when the content is gone (deleted since `stat`). Rejects when `out` fails or
   * closes before the last byte was handed to it.
   */
  send: (digest: Digest, out: Writable, opts?: { range?: ByteRange, ready?: () => void }) => Promise<boolean>
  /**
   * Links existing content into repository `name` (cross-repository mount, a manifest's own
   * bytes). Idempotent. Returns undefined, and links nothing, when the content does not exist.
   */
  link: (name: string, digest: Digest) => Promise<BlobInfo | undefined>
  /** Removes the repository's link (spec: end-10). The content stays until gc. False if not linked. */
  unlink: (name: string, digest: Digest) => Promise<boolean>
  /** Every stored blob, in no particular order, with the time it was last written or retained (gc). */
  list: () => AsyncIterable<StoredBlob>
  /**
   * Deletes content unless it was written or retained at or after `keepIfModifiedSince` (epoch ms),
   * checked atomically with respect to `stat(…, { retain: true })`: a concurrent push that retained
   * the blob either keeps it or learns it is gone. Returns true when the content was deleted.
   */
  remove: (digest: Digest, keepIfModifiedSince: number) => Promise<boolean>
}

export interface StoredManifest {
  descriptor: Descriptor
  /** Subject digest, when the manifest has a `subject` (spec: referrers). */
  subject?: string
  body: Buffer
}

export interface ManifestPut {
  digest: Digest
  mediaType: string
  body: Buffer
  /** When set, the manifest is listed by `referrers(name, subject)` with `referrer` as its descriptor. */
  subject?: Digest
  referrer?: Descriptor
}

export interface ManifestStore {
  /** The manifest (bytes and media type) if repository `name` has this revision; undefined otherwise. */
  get: (name: string, digest: Digest) => Promise<StoredManifest | undefined>
  /** Like `get` without the bytes. `retain` as in BlobStore.stat (an index being pushed references it). */
  stat: (name: string, digest: Digest, opts?: { retain?: boolean }) => Promise<Descriptor | undefined>
  /**
   * Stores the bytes (once per digest), then the repository's revision link, then the referrer
   * entry. Idempotent. Visible to `get` only once complete. The caller has validated the manifest.
   */
  put: (name: string, manifest: ManifestPut) => Promise<void>
  /** Removes the revision link and its referrer entry; tags are the caller's. False if absent. */
  delete: (name: string, digest: Digest) => Promise<boolean>
  /** Descriptors of the manifests in `name` whose subject is `subject`; [] when none. */
  referrers: (name: string, subject: Digest) => Promise<Descriptor[]>
  /** Digests of every revision in `name`, with when each was written (gc). */
  list: (name: string) => Promise<Array<{ digest: Digest, modifiedAt: number }>>
  /** Every repository that has held a manifest, sorted (catalog, gc). */
  repositories: () => Promise<string[]>
}

export interface TagStore {
  /**
   * The digest `tag` points at in `name`; undefined when the tag does not exist. Throws when the
   * stored link holds no valid digest (damaged storage: not the client's fault).
   */
  resolve: (name: string, tag: string) => Promise<Digest | undefined>
  /** Points `tag` at `digest`, replacing atomically; concurrent sets: the last one wins, whole. */
  set: (name: string, tag: string, digest: Digest) => Promise<void>
  /** False when the tag did not exist. */
  delete: (name: string, tag: string) => Promise<boolean>
  /** Tags of `name` in lexical order; undefined when the repository does not exist. */
  list: (name: string) => Promise<string[] | undefined>
}

export interface UploadSession {
  id: string
  name: string
  /** Bytes received so far; the next chunk must start here. */
  offset: number
  startedAt: number
}

export interface UploadStore {
  /** Starts a session for repository `name`. `algorithm` hints which hash to keep while streaming. */
  create: (name: string, opts?: { algorithm?: DigestAlgorithm }) => Promise<UploadSession>
  /**
   * The session, or undefined when unknown, purged, or belonging to another repository. Waits for
   * an append in progress on the session to settle, so the offset is the one to resume from.
   */
  get: (name: string, id: string) => Promise<UploadSession | undefined>
  /**
   * Streams `body` onto the end of the session. With `start`, throws RANGE_INVALID (416) unless it
   * equals the current offset. Bytes that arrived before a failure (client gone) stay in the session,
   * so the client can ask for the offset and resume. The body is consumed or destroyed.
   * Serialised per session. Returns the new offset. Throws BLOB_UPLOAD_UNKNOWN if missing.
   */
  append: (name: string, id: string, body: Readable, opts?: { start?: number }) => Promise<number>
  /**
   * Appends the optional final `body`, then checks the digest of everything received. On a match
   * the blob becomes visible (atomically) and linked into `name`, and the session is gone. On a
   * mismatch throws DIGEST_INVALID and the session is discarded: nothing becomes visible.
   */
  complete: (name: string, id: string, digest: Digest, body?: Readable, opts?: { start?: number }) => Promise<BlobInfo>
  /** Discards the session and its bytes. False if it did not exist. */
  cancel: (name: string, id: string) => Promise<boolean>
  /** Discards every session untouched since `olderThan` (epoch ms). Returns how many. */
  purge: (olderThan: number) => Promise<number>
}

export interface RegistryStorage {
  blobs: BlobStore
  manifests: ManifestStore
  tags: TagStore
  uploads: UploadStore
}

/** A storage backend as the composition root opens it (once): the four stores and their housekeeping. */
export interface RegistryBackend extends RegistryStorage {
  /** Purges upload sessions, and whatever partial writes they left, untouched since `olderThan` (epoch ms). */
  purge: (olderThan: number) => Promise<{ uploads: number, tmpFiles: number }>
}
