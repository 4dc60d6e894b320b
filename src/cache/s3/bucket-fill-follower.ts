/**
 * A follower replica's body for its local fill: the leader's parts, read from the bucket while the
 * leader writes them (cache-keys.ts `fills/<d>/<token>/`), so this replica's clients stream the
 * bytes as they arrive cluster-wide instead of after the whole blob is stored.
 *
 *   meta.json (size) ─► parts/<0> ─► parts/<8 MiB> ─► …          GET each part once it exists
 *        │ not there yet: poll (HEAD/GET), backoff 50 ms → 1 s
 *        ├─ blobs/<d> published meanwhile ─► the rest as one ranged GET of the blob
 *        └─ nothing new, and lock.holder(key) is no longer the leader's token for leaderGoneMs
 *           (without Redis: the leader's meta.json gone, as a failed fill leaves it)
 *           (or nothing new at all for stallMs) ─► error
 *
 * The body is a Readable pulled by the local fill (backpressure: the next part is fetched only when
 * the fill wants more), and that fill verifies digest and length as for an upstream body. An error
 * here fails the local fill, so this replica's clients see an aborted connection, never a clean end
 * of a short body; the next request elects again.
 */
import { Readable } from 'node:stream'
import type { S3Bucket } from '../../objects/s3-bucket.js'
import type { FillLock } from '../../cluster/fill-lock.js'
import type { Digest } from '../../oci/digest.js'
import { BlobFillError } from '../blob-fill.js'
import type { CacheKeys } from './cache-keys.js'
import type { FillMeta } from './bucket-fill-writer.js'

export interface FollowOptions {
  /** Nothing new while the lock names someone else or nobody for this long: the leader is gone. */
  leaderGoneMs: number
  /** Nothing new for this long, whoever holds the lock (PROXY_READ_TIMEOUT). */
  stallMs: number
  /** Waits between two polls (tests pass their own). */
  wait?: (ms: number) => Promise<void>
  now?: () => number
}

/**
 * leaderGoneMs is a grace period only: the lock already said the leader is gone, and a leader that
 * finished has published (checked first at every poll).
 */
export const DEFAULT_FOLLOW: FollowOptions = { leaderGoneMs: 3_000, stallMs: 900_000 }

const FIRST_POLL_MS = 50
const MAX_POLL_MS = 1_000

export interface FollowTarget {
  bucket: S3Bucket
  keys: CacheKeys
  lock: FillLock
  /** The election's key (`blob:<digest>`). */
  key: string
  digest: Digest
  /** The leader's fencing token: where its parts are. */
  token: string
  opts: FollowOptions
}

/** meta.json of the leader's fill once it exists, or 'published' when blobs/ appeared first. */
export async function awaitFillMeta (t: FollowTarget): Promise<FillMeta | 'published'> {
  const watch = new LeaderWatch(t)
  for (;;) {
    const meta = await t.bucket.getBytes(t.keys.fillMeta(t.digest, t.token))
    if (meta !== undefined) return JSON.parse(meta.toString('utf8')) as FillMeta
    if (await t.bucket.head(t.keys.blob(t.digest)) !== undefined) return 'published'
    await watch.next()
  }
}

/** The leader's bytes from 0, as they land (see the header). */
export function followFill (t: FollowTarget, meta: FillMeta): Readable {
  return Readable.from(parts(t, meta), { objectMode: false, highWaterMark: 1 << 20 })
}

async function * parts (t: FollowTarget, meta: FillMeta): AsyncGenerator<Buffer> {
  const { bucket, keys, digest, token } = t
  const watch = new LeaderWatch(t, true)
  let size = meta.size
  let pos = 0
  while (size === undefined || pos < size) {
    const part = await bucket.getStream(keys.fillPart(digest, token, pos))
    if (part !== undefined) {
      for await (const chunk of part.stream) {
        pos += (chunk as Buffer).length
        yield chunk as Buffer
      }
      watch.progress()
      continue
    }
    // The leader deletes its parts once it published: the rest is in the blob.
    const blob = await bucket.head(keys.blob(digest))
    if (blob !== undefined) {
      if (pos < blob.size) {
        const rest = await bucket.getStream(keys.blob(digest), { start: pos, end: blob.size - 1 })
        if (rest === undefined) throw new BlobFillError('ERR_FILL_GONE', `blob ${digest.value}: removed from the bucket while read`)
        yield * rest.stream as AsyncIterable<Buffer>
      }
      return
    }
    if (size === undefined) {
      const done = await bucket.getBytes(keys.fillDone(digest, token))
      if (done !== undefined) size = (JSON.parse(done.toString('utf8')) as { size: number }).size
      if (size !== undefined && pos >= size) return
    }
    await watch.next()
  }
}

/** Decides, between two polls that found nothing new, whether to wait more or give up. */
class LeaderWatch {
  private readonly now: () => number
  private readonly wait: (ms: number) => Promise<void>
  private lastProgress: number
  private goneSince: number | undefined
  private delay = FIRST_POLL_MS

  /** `metaWritten`: the leader's meta.json was read, so its absence now means the leader gave up. */
  constructor (private readonly t: FollowTarget, private readonly metaWritten = false) {
    this.now = t.opts.now ?? Date.now
    this.wait = t.opts.wait ?? (async ms => await new Promise(resolve => setTimeout(resolve, ms)))
    this.lastProgress = this.now()
  }

  progress (): void {
    this.lastProgress = this.now()
    this.goneSince = undefined
    this.delay = FIRST_POLL_MS
  }

  async next (): Promise<void> {
    const { t } = this
    const holder = await t.lock.holder(t.key)
    // undefined: the lock cannot tell (no coordination right now). The bucket can: a leader whose
    // fill failed deletes its meta.json. Otherwise only stallMs applies.
    const gone = holder === undefined
      ? this.metaWritten && await t.bucket.head(t.keys.fillMeta(t.digest, t.token)) === undefined
      : holder !== t.token
    const at = this.now()
    if (gone) this.goneSince ??= at
    else this.goneSince = undefined
    if (this.goneSince !== undefined && at - this.goneSince >= t.opts.leaderGoneMs) {
      throw new BlobFillError('ERR_FILL_LEADER_GONE', `blob ${t.digest.value}: the replica filling it stopped (no part for ${at - this.goneSince} ms and its lease is gone)`)
    }
    if (at - this.lastProgress >= t.opts.stallMs) {
      throw new BlobFillError('ERR_UPSTREAM_TIMEOUT', `blob ${t.digest.value}: the replica filling it wrote nothing for ${at - this.lastProgress} ms`)
    }
    await this.wait(this.delay)
    this.delay = Math.min(this.delay * 2, MAX_POLL_MS)
  }
}
