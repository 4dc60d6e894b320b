/**
 * The object primitive (object-store.ts) over one bucket (s3-bucket.ts), keys under S3_PREFIX.
 * PutObject is atomic and "if absent" is a conditional PUT (If-None-Match: *). S3's DeleteObject
 * answers the same whether or not the key existed, so `delete` asks HEAD first: its "false" is
 * for the stores' contracts (a tag that did not exist), not a lock.
 */
import type { Writable } from 'node:stream'
import type { ByteRange } from '../oci/range.js'
import { sendStream } from '../util/send-stream.js'
import type { S3Bucket } from './s3-bucket.js'
import type { ObjectStore, StoredObject } from './object-store.js'

export class S3Objects implements ObjectStore {
  constructor (readonly bucket: S3Bucket) {}

  async head (key: string): Promise<StoredObject | undefined> {
    const o = await this.bucket.head(key)
    return o === undefined ? undefined : { key, size: o.size, modifiedAt: o.lastModified }
  }

  async read (key: string): Promise<Buffer | undefined> {
    return await this.bucket.getBytes(key)
  }

  async send (key: string, out: Writable, opts: { range?: ByteRange, ready?: () => void } = {}): Promise<boolean> {
    // An empty range cannot be asked of S3 (bytes=0--1); the caller only needs the headers.
    if (opts.range !== undefined && opts.range.end < opts.range.start) {
      if (await this.bucket.head(key) === undefined) return false
      opts.ready?.()
      return true
    }
    const object = await this.bucket.getStream(key, opts.range)
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

  async write (key: string, bytes: Buffer | string, opts: { ifAbsent?: boolean } = {}): Promise<boolean> {
    return await this.bucket.put(key, bytes, { ifNoneMatch: opts.ifAbsent === true })
  }

  async delete (key: string): Promise<boolean> {
    if (await this.bucket.head(key) === undefined) return false
    await this.bucket.delete(key)
    return true
  }

  async * list (prefix: string): AsyncIterable<StoredObject> {
    for await (const o of this.bucket.list(prefix)) yield { key: o.key, size: o.size, modifiedAt: o.lastModified }
  }

  async children (prefix: string): Promise<string[]> {
    return (await this.bucket.childPrefixes(prefix)).sort()
  }

  async any (prefix: string): Promise<boolean> {
    return await this.bucket.any(prefix)
  }
}
