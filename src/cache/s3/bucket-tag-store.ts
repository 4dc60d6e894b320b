/**
 * Cached tag records with STORAGE=s3 (CacheTagStore, stores.ts): written through to the bucket's
 * `cache/tags/` as JSON, so a replica that never saw a tag can still answer it STALE in an upstream
 * outage. `get` stays synchronous and local (the contract: visible at once after `put`); `lookup`
 * asks the bucket when this replica has no record, and keeps what it found locally.
 */
import type { Logger } from '../../log.js'
import type { S3Bucket } from '../../objects/s3-bucket.js'
import { tryParseDigest } from '../../oci/digest.js'
import type { TagRecord, TagRef } from '../tag-key.js'
import type { CacheTagStore } from '../stores.js'
import type { CacheKeys } from './cache-keys.js'

export class BucketTagStore implements CacheTagStore {
  constructor (private readonly bucket: S3Bucket, private readonly keys: CacheKeys, private readonly local: CacheTagStore, private readonly log: Logger) {}

  get (ref: TagRef): TagRecord | undefined {
    return this.local.get(ref)
  }

  async lookup (ref: TagRef): Promise<TagRecord | undefined> {
    const local = this.local.get(ref)
    if (local !== undefined) return local
    let bytes: Buffer | undefined
    try {
      bytes = await this.bucket.getBytes(this.keys.tag(ref))
    } catch (err) {
      this.log.warn({ host: ref.host, repository: ref.repository, tag: ref.tag, err: (err as Error).message }, 'tag record not looked up in the bucket')
      return undefined
    }
    const record = bytes === undefined ? undefined : parseRecord(bytes)
    if (record === undefined) return undefined
    await this.local.put(ref, record)
    return this.local.get(ref)
  }

  async put (ref: TagRef, record: TagRecord): Promise<void> {
    if (tryParseDigest(record.digest) === undefined) return
    const stored = this.local.put(ref, record)
    let key: string
    try {
      key = this.keys.tag(ref)
    } catch {
      await stored // a name the bucket layout cannot hold stays on this replica
      return
    }
    await Promise.all([stored, this.bucket.put(key, JSON.stringify(record), { contentType: 'application/json' })])
  }
}

function parseRecord (bytes: Buffer): TagRecord | undefined {
  try {
    const r = JSON.parse(bytes.toString('utf8')) as Partial<TagRecord>
    if (typeof r.digest !== 'string' || tryParseDigest(r.digest) === undefined) return undefined
    if (typeof r.mediaType !== 'string' || typeof r.size !== 'number' || typeof r.fetchedAt !== 'number') return undefined
    return { digest: r.digest, mediaType: r.mediaType, size: r.size, fetchedAt: r.fetchedAt }
  } catch {
    return undefined
  }
}
