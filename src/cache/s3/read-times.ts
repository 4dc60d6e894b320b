/**
 * The hook the bucket janitor (CACHE_MAX_SIZE / CACHE_INACTIVE over the bucket) needs from the
 * bucket cache: every hit — a blob or manifest served from this replica's local tier or from the
 * bucket — is told here. The recorder batches them (cache-keys.ts `atimes/`: never one bucket write
 * per hit); the store only calls `recordRead`, which must be cheap and never throw.
 */
import type { Digest } from '../../oci/digest.js'

export interface ReadTimes {
  /** `digest` was read at `at` (ms since the epoch). Synchronous, cheap, never throws. */
  recordRead: (digest: Digest, at: number) => void
}

/** Records nothing: the default until the janitor's batching recorder is wired in. */
export const NO_READ_TIMES: ReadTimes = { recordRead: () => {} }
