/**
 * When bucket cache entries were last read, recorded without one write per hit (issue 17: access
 * times batched): reads collect in memory, one digest once with its latest time, and go to the
 * bucket as ONE object per flush — atimes/<replica>/<ms>-<n>.json, {digest: ms} — every
 * `flushEveryMs`, or sooner once `maxBatch` digests are waiting. The janitor folds the batches into
 * its view of recency and deletes them (bucket-janitor.ts).
 *
 *   hit ─recordRead(d, at)─► pending: Map<digest, max at> ─flush (timer | maxBatch | close)─► PUT one batch
 *
 * A failed PUT (S3 down) puts the reads back into `pending` (keeping the later time) for the next
 * flush: losing them would only make the janitor see entries as older than they are, but nothing
 * is gained by it. `pending` cannot grow past the number of distinct digests read.
 *
 * Implements the bucket cache's ReadTimes ({ recordRead(digest, at): void }, cache/s3/read-times.ts).
 */
import type { Logger } from '../../log.js'
import type { S3Bucket } from '../../objects/s3-bucket.js'
import type { Digest } from '../../oci/digest.js'
import type { CacheKeys } from './cache-keys.js'
import { serializeBatch } from './bucket-cache-index.js'
import type { ReadTimes } from './read-times.js'

export interface BatchedReadTimesOptions {
  bucket: S3Bucket
  keys: CacheKeys
  /** createReplicaId(): names this replica's batches. */
  replicaId: string
  /** Default 60 s: recency a minute late is plenty for CACHE_INACTIVE (days) and LRU order. */
  flushEveryMs?: number
  /** Flush as soon as this many distinct digests wait; default 10 000 (a ~1 MB batch). */
  maxBatch?: number
  log?: Logger
  now?: () => number
}

export class BatchedReadTimes implements ReadTimes {
  private pending = new Map<string, number>()
  private flushing: Promise<void> = Promise.resolve()
  private sequence = 0
  private readonly timer: NodeJS.Timeout
  private readonly maxBatch: number
  private readonly now: () => number
  /** Batches written since start (the status page, tests). */
  written = 0

  constructor (private readonly opts: BatchedReadTimesOptions) {
    this.maxBatch = opts.maxBatch ?? 10_000
    this.now = opts.now ?? Date.now
    this.timer = setInterval(() => { void this.flush() }, opts.flushEveryMs ?? 60_000)
    this.timer.unref()
  }

  recordRead (digest: Digest, at: number): void {
    const before = this.pending.get(digest.value)
    if (before === undefined || before < at) this.pending.set(digest.value, at)
    if (before === undefined && this.pending.size >= this.maxBatch) void this.flush()
  }

  /** Writes what is pending as one batch (nothing when nothing is); flushes run one after another. Never throws. */
  async flush (): Promise<void> {
    this.flushing = this.flushing.then(async () => { await this.writeBatch() })
    await this.flushing
  }

  /** Stops the timer and writes what is left. */
  async close (): Promise<void> {
    clearInterval(this.timer)
    await this.flush()
  }

  private async writeBatch (): Promise<void> {
    if (this.pending.size === 0) return
    const batch = this.pending
    this.pending = new Map()
    const key = this.opts.keys.atimeBatch(this.opts.replicaId, this.now(), this.sequence++)
    try {
      await this.opts.bucket.put(key, serializeBatch(batch), { contentType: 'application/json' })
      this.written++
    } catch (err) {
      for (const [digest, at] of batch) {
        if ((this.pending.get(digest) ?? -Infinity) < at) this.pending.set(digest, at)
      }
      this.opts.log?.warn({ err: (err as Error).message, digests: batch.size }, 'read times not written; kept for the next flush')
    }
  }
}
