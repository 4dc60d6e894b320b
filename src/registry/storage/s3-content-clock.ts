/**
 * gc's clock for content in the bucket: "last written or retained" is the later of the blob's own
 * LastModified and its retained/ marker's (S3 cannot change an object's time without rewriting
 * it). And, since S3 has no compare-and-delete across two keys, the handshake that makes gc's
 * `remove` safe against a `retain` on another replica (BlobStore.remove's contract: the push
 * either keeps the blob or learns it is gone):
 *
 *   push (retain)                              gc (remove)
 *   1. PUT  retained/<d>                       1. PUT  sweeping/<d>
 *   2. HEAD sweeping/<d>: while there, wait    2. HEAD blobs/<d>, retained/<d>: either new? keep
 *   3. HEAD blobs/<d>: the answer              3. DELETE blobs/<d>, retained/<d>
 *                                              4. DELETE sweeping/<d> (always)
 *
 * Each side writes its own flag and then reads the other's; S3 (and RGW) read after write
 * consistently, so they cannot both miss each other. If gc's step 2 missed the push's marker, the
 * marker was written after it, so the push's step 2 sees gc's flag and waits for the verdict, then
 * step 3 tells it whether the blob stayed. A push that waits does so for milliseconds (gc's
 * steps 2–4); a flag left by a gc that died is taken for abandoned after ABANDONED_AFTER_MS (the
 * push removes it, and reports the blob gone once, to be safe), and gc gives up a deletion whose
 * look took longer than DECIDE_WITHIN_MS, so no push stopped waiting while gc still deletes.
 */
import { setTimeout as delay } from 'node:timers/promises'
import type { Digest } from '../../oci/digest.js'
import type { ObjectInfo, S3Bucket } from '../../objects/s3-bucket.js'
import type { StoredBlob } from './stores.js'
import type { StorageKeys } from './storage-keys.js'
import type { ContentClock } from './object-blob-store.js'

export const ABANDONED_AFTER_MS = 60_000
/** Well under ABANDONED_AFTER_MS, leaving room for the DELETE's own attempts (gc runs with short request timeouts). */
const DECIDE_WITHIN_MS = 10_000
const POLL_MS = 50

export class S3ContentClock implements ContentClock {
  constructor (private readonly bucket: S3Bucket, private readonly keys: StorageKeys) {}

  async retain (digest: Digest): Promise<number | undefined> {
    const key = this.keys.blob(digest)
    if (await this.bucket.head(key) === undefined) return undefined // no marker for content that is not there
    await this.bucket.put(this.keys.retained(digest), '')
    if (!await this.verdict(digest)) return undefined
    return (await this.bucket.head(key))?.size
  }

  /**
   * Every blob with its time: two listings walked side by side, not a HEAD per blob:
   * blobs/<alg>/<hex[0:2]>/<hex> and retained/<alg>/<hex> both come in <alg>, <hex> order
   * (ListObjectsV2 sorts keys), so each blob meets its marker, if any, without holding either
   * listing in memory.
   */
  async * list (): AsyncIterable<StoredBlob> {
    const markers = this.bucket.list(this.keys.retainedPrefix)[Symbol.asyncIterator]()
    let marker = await this.nextMarker(markers)
    for await (const o of this.bucket.list(this.keys.blobsPrefix)) {
      const digest = this.keys.digestOfBlobKey(o.key)
      if (digest === undefined) continue // not ours: never touched
      while (marker !== undefined && marker.digest.value < digest.value) marker = await this.nextMarker(markers)
      const retainedAt = marker?.digest.value === digest.value ? marker.lastModified : 0
      yield { digest, size: o.size, modifiedAt: Math.max(o.lastModified, retainedAt) }
    }
  }

  async remove (digest: Digest, keepIfModifiedSince: number): Promise<boolean> {
    const modified = await this.modifiedAt(digest)
    if (modified === undefined || modified >= keepIfModifiedSince) return false // the common case: no flag needed
    const flag = this.keys.sweeping(digest)
    await this.bucket.put(flag, '')
    const flagged = performance.now()
    try {
      const again = await this.modifiedAt(digest)
      if (again === undefined || again >= keepIfModifiedSince) return false
      if (performance.now() - flagged > DECIDE_WITHIN_MS) return false // a waiting push may have given up on us
      await this.bucket.delete(this.keys.blob(digest))
      await this.bucket.delete(this.keys.retained(digest))
      return true
    } finally {
      await this.bucket.delete(flag)
    }
  }

  /** The later of the blob's LastModified and its marker's; undefined when the blob is absent. */
  private async modifiedAt (digest: Digest): Promise<number | undefined> {
    const [content, marker] = await Promise.all([this.bucket.head(this.keys.blob(digest)), this.bucket.head(this.keys.retained(digest))])
    return content === undefined ? undefined : Math.max(content.lastModified, marker?.lastModified ?? 0)
  }

  /** Waits while gc decides about `digest`; false when its flag was abandoned (gc died: the blob may be gone). */
  private async verdict (digest: Digest): Promise<boolean> {
    const flag = this.keys.sweeping(digest)
    const started = performance.now()
    while (await this.bucket.head(flag) !== undefined) {
      if (performance.now() - started > ABANDONED_AFTER_MS) {
        await this.bucket.delete(flag)
        return false
      }
      await delay(POLL_MS)
    }
    return true
  }

  private async nextMarker (markers: AsyncIterator<ObjectInfo>): Promise<{ digest: Digest, lastModified: number } | undefined> {
    for (;;) {
      const r = await markers.next()
      if (r.done === true) return undefined
      const digest = this.keys.digestOfRetainedKey(r.value.key)
      if (digest !== undefined) return { digest, lastModified: r.value.lastModified }
    }
  }
}
