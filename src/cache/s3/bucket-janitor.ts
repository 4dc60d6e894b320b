/**
 * Keeps the bucket cache bounded cluster-wide (CACHE_MAX_SIZE, CACHE_INACTIVE apply to the bucket
 * when STORAGE=s3) and clears what fills left behind. One janitor at a time across the replicas:
 * the run is elected with the FillLock (key `janitor`); without coordination any replica may run
 * it, and two runs at once only repeat the same deletions (every step is idempotent).
 *
 *   elect('janitor') ─ follower ─► skipped (another replica runs it)
 *        │ leader
 *        ├─ atimes/ ─► every batch folded: digest → latest read               (readReadTimes)
 *        ├─ blobs/, manifests/ ─► lastReadAt = max(LastModified, latest read) (listBucketCache)
 *        ├─ delete: not read for CACHE_INACTIVE, then least recently read until ≤ CACHE_MAX_SIZE
 *        ├─ PUT atimes/<replica>/<now>-<n>.json: the folded reads of what is kept (newer than its
 *        │  LastModified) — written BEFORE the batches it replaces are deleted, so a crash between
 *        │  the two leaves duplicates (harmless: reads fold by max), never a lost read
 *        ├─ delete the folded batches
 *        └─ fills/<alg>/<hex>/<token>/: whose newest object is older than `fillMaxAgeMs` and whose
 *           token is not the digest's fill-lock holder any more (the leader died or gave up) → deleted
 *
 * Deletions stop as soon as the janitor's lease is lost (another janitor took over). A blob read by
 * a client while it is deleted: the read may fail and the next pull fetches it again — the same
 * contract as the directory cache's eviction. Tag records (tags/) are not bounded here: they are
 * small and the outage fallback needs them.
 */
import type { Logger } from '../../log.js'
import type { S3Bucket } from '../../objects/s3-bucket.js'
import { tryParseDigest, type Digest } from '../../oci/digest.js'
import type { FillLock, FillLease } from '../../cluster/fill-lock.js'
import { planRemovals } from '../removal-plan.js'
import type { CacheKeys } from './cache-keys.js'
import { listBucketCache, readReadTimes, serializeBatch, type BucketEntry } from './bucket-cache-index.js'

export interface BucketJanitorOptions {
  bucket: S3Bucket
  keys: CacheKeys
  fillLock: FillLock
  /** Names the folded batch the janitor writes (atimes/<replicaId>/). */
  replicaId: string
  /** CACHE_MAX_SIZE: bytes of blobs and manifests in the bucket, all replicas together. */
  maxSize: number
  /** CACHE_INACTIVE; 0: no expiry. */
  inactiveMs: number
  /** A fill directory without a holder is deleted once its newest object is this old; default 1 h. */
  fillMaxAgeMs?: number
  /** The fill lock's key for a digest (what the bucket cache elects); default the digest string. */
  fillLockKey?: (digest: Digest) => string
  /** Period of `start()`; default 10 min. */
  everyMs?: number
  log?: Logger
  now?: () => number
}

export interface JanitorReport {
  /** 'skipped': another replica holds the janitor's lock. 'lost': the lease was lost midway. */
  outcome: 'done' | 'skipped' | 'lost'
  entries: number
  bytesBefore: number
  bytesAfter: number
  inactive: BucketEntry[]
  forSize: BucketEntry[]
  batchesFolded: number
  fillsDeleted: string[]
}

const FILL_DIR = /^([a-z0-9]+)\/([0-9a-f]+)\/([A-Za-z0-9._-]+)\//

export class BucketJanitor {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<JanitorReport> | undefined
  private sequence = 0
  private readonly now: () => number

  constructor (private readonly opts: BucketJanitorOptions) {
    this.now = opts.now ?? Date.now
  }

  /** Runs every `everyMs` (unref'd) from now on; failures are logged, the next run tries again. */
  start (): void {
    if (this.timer !== undefined) return
    this.timer = setInterval(() => {
      this.run().catch(err => { this.opts.log?.warn({ err: (err as Error).message }, 'bucket janitor run failed') })
    }, this.opts.everyMs ?? 600_000)
    this.timer.unref()
  }

  /** One run now (on demand); a run already going is joined. Throws S3's error (OciError UNAVAILABLE). */
  async run (): Promise<JanitorReport> {
    this.running ??= this.runOnce().finally(() => { this.running = undefined })
    return await this.running
  }

  async close (): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await this.running?.catch(() => {})
  }

  private async runOnce (): Promise<JanitorReport> {
    const report: JanitorReport = { outcome: 'done', entries: 0, bytesBefore: 0, bytesAfter: 0, inactive: [], forSize: [], batchesFolded: 0, fillsDeleted: [] }
    const election = await this.opts.fillLock.elect('janitor')
    if (election.role === 'follower') return { ...report, outcome: 'skipped' }
    const lease = election.lease
    try {
      const { bucket, keys } = this.opts
      const now = this.now()
      const batches = await readReadTimes(bucket, keys)
      const entries = await listBucketCache(bucket, keys, batches.reads)
      const plan = planRemovals(entries, { now, olderThanMs: this.opts.inactiveMs > 0 ? this.opts.inactiveMs : undefined, maxSize: this.opts.maxSize })
      report.entries = entries.length
      report.bytesBefore = sum(entries)
      for (const [list, doomed] of [[report.inactive, plan.inactive], [report.forSize, plan.forSize]] as const) {
        for (const e of doomed) {
          if (!lease.held()) return { ...report, outcome: 'lost', bytesAfter: report.bytesBefore - sum(report.inactive) - sum(report.forSize) }
          await bucket.delete(e.key)
          list.push(e)
        }
      }
      report.bytesAfter = sum(plan.kept)
      if (batches.keys.length > 0 && lease.held()) {
        const kept = new Map<string, number>()
        for (const e of plan.kept) {
          const read = batches.reads.get(e.digest.value)
          if (read !== undefined && read > e.lastModified) kept.set(e.digest.value, read)
        }
        if (kept.size > 0) await bucket.put(keys.atimeBatch(this.opts.replicaId, now, this.sequence++), serializeBatch(kept), { contentType: 'application/json' })
        for (const key of batches.keys) await bucket.delete(key)
        report.batchesFolded = batches.keys.length
      }
      if (lease.held()) report.fillsDeleted = await this.clearFills(lease, now)
      else report.outcome = 'lost'
      this.opts.log?.info({
        outcome: report.outcome, entries: report.entries, bytesBefore: report.bytesBefore, bytesAfter: report.bytesAfter,
        inactive: report.inactive.length, forSize: report.forSize.length, batchesFolded: report.batchesFolded, fillsDeleted: report.fillsDeleted.length,
      }, 'bucket janitor ran')
      return report
    } finally {
      await lease.release()
    }
  }

  /** Deletes fill directories left by leaders that are gone (see the header); returns their prefixes. */
  private async clearFills (lease: FillLease, now: number): Promise<string[]> {
    const { bucket, keys } = this.opts
    const maxAge = this.opts.fillMaxAgeMs ?? 3_600_000
    const dirs = new Map<string, { digest: Digest, token: string, newest: number, objects: string[] }>()
    for await (const o of bucket.list(keys.fillsPrefix)) {
      const m = FILL_DIR.exec(o.key.slice(keys.fillsPrefix.length))
      const digest = m === null ? undefined : tryParseDigest(`${m[1]}:${m[2]}`)
      if (m === null || digest === undefined) continue
      const dir = `${keys.fillsPrefix}${m[0]}`
      const d = dirs.get(dir) ?? { digest, token: m[3], newest: 0, objects: [] }
      d.newest = Math.max(d.newest, o.lastModified)
      d.objects.push(o.key)
      dirs.set(dir, d)
    }
    const deleted: string[] = []
    for (const [dir, d] of dirs) {
      if (now - d.newest <= maxAge) continue
      // undefined: no coordination right now, so the age alone decides (a live leader writes a part
      // at least every few seconds; one silent for fillMaxAgeMs is not filling any more).
      const holder = await this.opts.fillLock.holder(this.opts.fillLockKey?.(d.digest) ?? d.digest.value)
      if (holder === d.token || !lease.held()) continue
      for (const key of d.objects) await bucket.delete(key)
      deleted.push(dir)
    }
    return deleted
  }
}

function sum (entries: readonly BucketEntry[]): number {
  return entries.reduce((n, e) => n + e.size, 0)
}
