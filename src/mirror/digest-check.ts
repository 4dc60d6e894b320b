/**
 * A blob body passed through without the cache (BYPASS: too large, no room, the disk full; or a
 * joiner's own fetch) is still checked against the digest it was asked by: it is hashed on the
 * way, and its last byte goes out only once the hash and length matched. A wrong body ends in an
 * error, so the client's connection is aborted: never a clean end of a wrong body, cached or not.
 */
import { createHash, type Hash } from 'node:crypto'
import { Transform, type TransformCallback } from 'node:stream'
import type { Digest } from '../oci/digest.js'

export class DigestCheck extends Transform {
  private readonly hash: Hash
  private length = 0
  /** The last byte seen so far, held back until the verdict. */
  private held: Buffer | undefined

  constructor (private readonly digest: Digest, private readonly expectedSize?: number) {
    super({ highWaterMark: 1 << 20 })
    this.hash = createHash(digest.algorithm)
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (chunk.length === 0) { cb(); return }
    this.hash.update(chunk)
    this.length += chunk.length
    const out = this.held === undefined ? chunk : Buffer.concat([this.held, chunk])
    this.held = out.subarray(out.length - 1)
    cb(null, out.length > 1 ? out.subarray(0, out.length - 1) : undefined)
  }

  override _flush (cb: TransformCallback): void {
    const actual = this.hash.digest('hex')
    if (actual !== this.digest.hex || (this.expectedSize !== undefined && this.length !== this.expectedSize)) {
      cb(Object.assign(new Error(`blob ${this.digest.value}: upstream body hashes to ${this.digest.algorithm}:${actual} (${this.length} bytes)`), { code: 'ERR_BLOB_DIGEST_MISMATCH' }))
      return
    }
    cb(null, this.held)
  }
}
