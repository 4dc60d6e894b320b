/**
 * The leader's copy of a fill into the bucket (cache-keys.ts draws the keys): the local fill
 * (blob-fill.ts) stays the one pipeline that owns the upstream body and its errors; this writer is
 * one more reader of it, like a client.
 *
 *   upstream ─► BlobFill (local tier, verified) ─► TailReader ─► parts of PART_SIZE ─► fills/<d>/<token>/parts/<start>
 *                                                      │ hashed again here            (followers read these)
 *                                                      ▼ the reader ends only once the fill verified
 *                         digest + length match ─► publish blobs/<d> (one PutObject, or
 *                                                  CompleteMultipartUpload of UploadPartCopy's)
 *                                               ─► done.json ─► parts deleted ─► lease released
 *
 * meta.json goes first, with the announced size, so a follower knows how long the body is before
 * the first part lands. A part is one PutObject (atomic): a follower never sees half of one. Only
 * what hashed to the digest with the announced length is published (the fill checked it, and so do
 * we, on the bytes we actually wrote); a failed fill or a failed write publishes nothing, deletes
 * the parts it wrote, and gives the lease up at once so followers see the leader gone and the next
 * request elects again. Memory: one part (8 MiB) at most.
 */
import { createHash } from 'node:crypto'
import type { Logger } from '../../log.js'
import type { S3Bucket } from '../../objects/s3-bucket.js'
import type { FillLease } from '../../cluster/fill-lock.js'
import { BlobFillError, type BlobFill, type FillHandle } from '../blob-fill.js'
import { TailReader } from '../tail-reader.js'
import type { CacheOrigin } from '../stores.js'
import type { CacheKeys } from './cache-keys.js'

/** Part size of a fill in the bucket: what UploadPartCopy needs (≥ 5 MiB but the last), and what a follower waits for at most. */
export const PART_SIZE = 8 << 20

/** meta.json of a fill (cache-keys.ts). */
export interface FillMeta {
  size?: number
  mediaType?: string
  origin?: CacheOrigin
  startedAt: number
}

/** Points of a bucket fill's life a test can pause at; a hook returning a promise holds the writer there. */
export type BucketFillStep = 'meta-written' | 'part-written' | 'verified' | 'published' | 'failed'
export type BucketFillHook = (step: BucketFillStep, info: { digest: string, token: string, written: number }) => void | Promise<void>

export interface BucketFillWriterOptions {
  bucket: S3Bucket
  keys: CacheKeys
  fill: BlobFill
  /** A share of the fill's descriptor, taken while the fill was still open; the writer releases it. */
  handle: FillHandle
  lease: FillLease
  origin?: CacheOrigin
  log: Logger
  hook?: BucketFillHook
}

/** S3 metadata of a published blob (ASCII only: host and repository names are). */
export function originMetadata (origin: CacheOrigin | undefined): Record<string, string> | undefined {
  return origin === undefined ? undefined : { 'origin-host': origin.host, 'origin-repository': origin.repository }
}

export class BucketFillWriter {
  /** Resolves true once published, false when nothing was (never rejects). */
  readonly done: Promise<boolean>
  private readonly starts: number[] = []

  constructor (private readonly opts: BucketFillWriterOptions) {
    this.done = this.run().then(() => true, async err => { await this.failed(err); return false })
  }

  private async run (): Promise<void> {
    const { bucket, keys, fill, lease } = this.opts
    const d = fill.digest
    const token = lease.token
    const reader = new TailReader(fill, 0, undefined, this.opts.handle)
    try {
      const meta: FillMeta = { size: fill.expectedSize, mediaType: fill.mediaType, origin: this.opts.origin, startedAt: Date.now() }
      await this.write(keys.fillMeta(d, token), JSON.stringify(meta))
      await this.step('meta-written', 0)
      const hash = createHash(d.algorithm)
      let pending: Buffer[] = []
      let pendingBytes = 0
      let start = 0
      let last: Buffer | undefined
      const flush = async (n: number): Promise<void> => {
        const all = Buffer.concat(pending, pendingBytes)
        last = all.subarray(0, n)
        const rest = all.subarray(n)
        pending = rest.length > 0 ? [rest] : []
        pendingBytes = rest.length
        await this.write(keys.fillPart(d, token, start), last)
        this.starts.push(start)
        start += n
        await this.step('part-written', start)
      }
      for await (const chunk of reader) {
        const c = chunk as Buffer
        hash.update(c)
        pending.push(c)
        pendingBytes += c.length
        while (pendingBytes >= PART_SIZE) await flush(PART_SIZE)
      }
      if (pendingBytes > 0) await flush(pendingBytes)
      // The fill verified what it read from the upstream; this checks what went into the parts.
      const hex = hash.digest('hex')
      if (hex !== d.hex || (fill.size !== undefined && start !== fill.size)) {
        throw new BlobFillError('ERR_BLOB_DIGEST_MISMATCH', `blob ${d.value}: the parts written hash to ${d.algorithm}:${hex} (${start} bytes)`)
      }
      await this.step('verified', start)
      await this.publish(last ?? Buffer.alloc(0))
      await this.step('published', start)
      await this.write(keys.fillDone(d, token), JSON.stringify({ size: start }))
      this.opts.log.debug({ digest: d.value, size: start, parts: this.starts.length }, 'blob published to the bucket')
      await this.deleteParts()
    } finally {
      reader.destroy()
      await lease.release()
    }
  }

  /** blobs/<d> appears whole or not at all: one PutObject, or one CompleteMultipartUpload. */
  private async publish (onlyPart: Buffer): Promise<void> {
    const { bucket, keys, fill, lease } = this.opts
    const target = keys.blob(fill.digest)
    const written = { contentType: fill.mediaType, metadata: originMetadata(this.opts.origin) }
    if (this.starts.length <= 1) { await bucket.put(target, onlyPart, written); return }
    const uploadId = await bucket.createMultipart(target, written)
    try {
      const etags: string[] = []
      for (const [i, start] of this.starts.entries()) {
        etags.push(await bucket.uploadPartCopy(target, uploadId, i + 1, keys.fillPart(fill.digest, lease.token, start)))
      }
      await bucket.completeMultipart(target, uploadId, etags)
    } catch (err) {
      await bucket.abortMultipart(target, uploadId)
      throw err
    }
  }

  /**
   * Fencing is by key: every key written here is under this lease's token, so a leader that lost
   * its lease (stalled past the TTL, or Redis gone) overwrites nothing of a successor's, and what it
   * publishes is the digest's verified bytes. It goes on writing even then: its followers may have
   * no Redis to tell them it stopped, and would wait for parts that never come (issue 17's cluster
   * e2e: redis-server killed mid-fill left them hanging until PROXY_READ_TIMEOUT).
   */
  private async write (key: string, body: Buffer | string): Promise<void> {
    await this.opts.bucket.put(key, body, { contentType: typeof body === 'string' ? 'application/json' : 'application/octet-stream' })
  }

  private async deleteParts (): Promise<void> {
    const { bucket, keys, fill, lease } = this.opts
    for (const start of this.starts) await bucket.delete(keys.fillPart(fill.digest, lease.token, start)).catch(() => {})
  }

  private async failed (err: unknown): Promise<void> {
    const { fill, lease, log } = this.opts
    // A failed fill is the local fill's to report; a bucket write failing is ours.
    if (fill.state !== 'failed') log.warn({ digest: fill.digest.value, token: lease.token, err: (err as Error).message }, 'blob not published to the bucket: other replicas will fetch it themselves')
    await this.deleteParts()
    await this.opts.bucket.delete(this.opts.keys.fillMeta(fill.digest, lease.token)).catch(() => {})
    await this.step('failed', 0).catch(() => {})
  }

  private async step (step: BucketFillStep, written: number): Promise<void> {
    await this.opts.hook?.(step, { digest: this.opts.fill.digest.value, token: this.opts.lease.token, written })
  }
}
