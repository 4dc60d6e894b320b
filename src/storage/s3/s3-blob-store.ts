/**
 * Blobs in the bucket: bytes once per digest under blobs/, a link object per repository under
 * `_layers/`. Reads stream GetObject (with a Range when asked) into the response with backpressure;
 * nothing is buffered whole.
 *
 * "Last written or retained" (gc's clock) is the later of the blob's own LastModified and its
 * retained/ marker's: S3 cannot change an object's time without rewriting it, and a 10 GB
 * self-copy per push that references a layer is no option.
 */
import type { Writable } from 'node:stream'
import type { ByteRange } from '../../oci/range.js'
import type { BlobInfo, BlobStore, StoredBlob } from '../../registry/storage/stores.js'
import type { Digest } from '../../oci/digest.js'
import { sendStream } from '../../util/send-stream.js'
import type { S3Bucket, ObjectInfo } from '../../objects/s3-bucket.js'
import type { S3Keys } from './s3-keys.js'

export class S3BlobStore implements BlobStore {
  constructor (private readonly bucket: S3Bucket, private readonly keys: S3Keys) {}

  async stat (name: string, digest: Digest, opts: { retain?: boolean } = {}): Promise<BlobInfo | undefined> {
    if (await this.bucket.head(this.keys.layerLink(name, digest)) === undefined) return undefined
    return opts.retain === true ? await this.retainContent(digest) : await this.contentInfo(digest)
  }

  async send (digest: Digest, out: Writable, opts: { range?: ByteRange, ready?: () => void } = {}): Promise<boolean> {
    // An empty range cannot be asked of S3 (bytes=0--1); the caller only needs the headers.
    if (opts.range !== undefined && opts.range.end < opts.range.start) {
      if (await this.contentInfo(digest) === undefined) return false
      opts.ready?.()
      return true
    }
    const object = await this.bucket.getStream(this.keys.blob(digest), opts.range)
    if (object === undefined) return false
    // Once GetObject answered, the bytes are ours to the end even if gc deletes the key meanwhile.
    opts.ready?.()
    try {
      await sendStream(object.stream, out)
    } catch (err) {
      object.stream.destroy()
      throw err
    }
    return true
  }

  async link (name: string, digest: Digest): Promise<BlobInfo | undefined> {
    const info = await this.retainContent(digest)
    if (info === undefined) return undefined
    const link = this.keys.layerLink(name, digest)
    if (await this.bucket.head(link) === undefined) await this.bucket.put(link, digest.value)
    return info
  }

  async unlink (name: string, digest: Digest): Promise<boolean> {
    const link = this.keys.layerLink(name, digest)
    if (await this.bucket.head(link) === undefined) return false
    await this.bucket.delete(link)
    return true
  }

  /** Writes small content (a manifest's bytes) once per digest; marks it retained when already there. */
  async putBytes (digest: Digest, bytes: Buffer): Promise<void> {
    if (await this.retainContent(digest) !== undefined) return
    await this.bucket.put(this.keys.blob(digest), bytes)
  }

  /**
   * Two listings walked side by side, not a HEAD per blob: blobs/<alg>/<hex[0:2]>/<hex> and
   * retained/<alg>/<hex> both come in <alg>, <hex> order (ListObjectsV2 sorts keys), so each
   * blob meets its marker, if any, without holding either listing in memory.
   */
  async * list (): AsyncIterable<StoredBlob> {
    const markers = this.bucket.list(this.keys.retainedPrefix)[Symbol.asyncIterator]()
    let marker = await nextMarker(markers, this.keys)
    for await (const o of this.bucket.list(this.keys.blobsPrefix)) {
      const digest = this.keys.digestOfBlobKey(o.key)
      if (digest === undefined) continue // not ours: never touched
      while (marker !== undefined && marker.digest.value < digest.value) marker = await nextMarker(markers, this.keys)
      const retainedAt = marker?.digest.value === digest.value ? marker.lastModified : 0
      yield { digest, size: o.size, modifiedAt: Math.max(o.lastModified, retainedAt) }
    }
  }

  /**
   * S3 has no compare-and-delete across two keys, so unlike the directory store this is not atomic
   * against a concurrent `retain`: a push that retains the blob between our look and our delete
   * loses it (its manifest PUT then fails on the next stat). gc on a bucket is for a quiet registry
   * until the issue-17 lock (Redis) serialises it with pushes.
   */
  async remove (digest: Digest, keepIfModifiedSince: number): Promise<boolean> {
    const key = this.keys.blob(digest)
    const [content, marker] = await Promise.all([this.bucket.head(key), this.bucket.head(this.keys.retained(digest))])
    if (content === undefined) return false
    if (Math.max(content.lastModified, marker?.lastModified ?? 0) >= keepIfModifiedSince) return false
    await this.bucket.delete(key)
    await this.bucket.delete(this.keys.retained(digest))
    return true
  }

  async contentInfo (digest: Digest): Promise<BlobInfo | undefined> {
    const o = await this.bucket.head(this.keys.blob(digest))
    return o === undefined ? undefined : { digest: digest.value, size: o.size }
  }

  async retainContent (digest: Digest): Promise<BlobInfo | undefined> {
    const info = await this.contentInfo(digest)
    if (info !== undefined) await this.bucket.put(this.keys.retained(digest), '')
    return info
  }
}

async function nextMarker (markers: AsyncIterator<ObjectInfo>, keys: S3Keys): Promise<{ digest: Digest, lastModified: number } | undefined> {
  for (;;) {
    const r = await markers.next()
    if (r.done === true) return undefined
    const digest = keys.digestOfRetainedKey(r.value.key)
    if (digest !== undefined) return { digest, lastModified: r.value.lastModified }
  }
}
