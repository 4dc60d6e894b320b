/**
 * Where an upload session's bytes wait until the PUT: the one part of the hosted stores that the
 * directory and the bucket do differently (object-upload-store.ts says why), as a small strategy.
 * Implementations: fs-upload-bytes.ts (one file, appended), s3-upload-bytes.ts (part objects).
 */
import type { Digest } from '../../oci/digest.js'
import { OciError } from '../../errors.js'
import { uploadRangeHeader } from '../../oci/range.js'

export interface UploadBytes {
  /** Makes room for a new session's bytes (before its info.json is written). */
  create: (id: string) => Promise<void>
  /** Bytes received so far (the offset), or undefined when the session's bytes are gone. */
  size: (id: string) => Promise<number | undefined>
  /**
   * Stores `chunks` after the `offset` bytes already there; returns the new offset. Bytes stored
   * before a failure of `chunks` (the client went away) stay, so the client can resume. Throws
   * RANGE_INVALID when another writer stored bytes at `offset` first. Called under the session's
   * mutex (one append or publish at a time in this process).
   */
  append: (id: string, offset: number, chunks: AsyncIterable<Buffer>) => Promise<number>
  /**
   * Computes the digest of the session's bytes — `knownHex` when the caller's running hash is
   * trusted, else by reading them — and, when it equals `digest`, makes them visible atomically
   * as the content of `digest` (kept as it is when that content exists already: same bytes).
   * Returns the hex it found; nothing becomes visible on a mismatch. The session's bytes stay
   * (the caller removes them).
   */
  publish: (id: string, digest: Digest, knownHex: string | undefined) => Promise<string>
  /** Deletes the session's bytes; idempotent. */
  remove: (id: string) => Promise<void>
  /** Every session that has bytes or a record, with when it was last written to (purge). */
  sessions: () => AsyncIterable<{ id: string, touchedAt: number }>
}

/** spec: end-5, chunks out of order get 416; Range tells the client where to resume. */
export function rangeInvalid (offset: number, start: number): OciError {
  return new OciError('RANGE_INVALID', 'chunk does not start at the upload offset', {
    headers: { range: uploadRangeHeader(offset) },
    detail: { offset, start },
  })
}
