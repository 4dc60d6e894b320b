/**
 * The bucket cache (STORAGE=s3) as `crossdock cache` sees it: blobs/ and manifests/ with their last
 * reads folded from atimes/ (cache/s3/bucket-cache-index.ts); tags/ only counted. Read-only towards
 * atimes/ and fills/: folding batches and clearing fills is the janitor's (bucket-janitor.ts), so
 * the commands are safe beside running replicas. Repository names come from each object's
 * metadata (a HEAD each), fetched only for what is printed.
 */
import { Readable } from 'node:stream'
import type { S3Config } from '../config/index.js'
import { S3Bucket } from '../objects/s3-bucket.js'
import { CacheKeys } from '../cache/s3/cache-keys.js'
import { listBucketCache, readReadTimes } from '../cache/s3/bucket-cache-index.js'
import type { CacheView, CacheViewEntry } from './cache-view.js'

/** The object metadata the bucket cache's publish records (x-amz-meta-host, x-amz-meta-repository). */
export const ORIGIN_METADATA = { host: 'host', repository: 'repository' } as const
const HEADS_AT_ONCE = 16

export function bucketCacheView (config: S3Config): CacheView & { close: () => void } {
  const bucket = new S3Bucket(config)
  const keys = new CacheKeys(config.prefix)
  return {
    where: `s3://${config.bucket}/${keys.root}`,
    missing: 'content object missing',
    entries: async () => {
      const { reads } = await readReadTimes(bucket, keys)
      const out: CacheViewEntry[] = await listBucketCache(bucket, keys, reads)
      return out
    },
    // Tag records are counted, never pruned or hashed: tiny, and the outage fallback needs them.
    tagRecords: async () => {
      let n = 0
      for await (const _ of bucket.list(keys.tagsPrefix)) n++
      return n
    },
    origins: async entries => {
      const todo = entries.filter(e => e.repository === undefined)
      for (let i = 0; i < todo.length; i += HEADS_AT_ONCE) {
        await Promise.all(todo.slice(i, i + HEADS_AT_ONCE).map(async e => {
          const meta = (await bucket.head(e.key))?.metadata ?? {}
          if (meta[ORIGIN_METADATA.repository] !== undefined) {
            e.host = meta[ORIGIN_METADATA.host]
            e.repository = meta[ORIGIN_METADATA.repository]
          }
        }))
      }
    },
    remove: async doomed => {
      for (const e of doomed) await bucket.delete(e.key)
    },
    // A blob and a manifest of one digest are two objects here: each is hashed.
    contents: entries => entries.map(e => [e]),
    open: async e => {
      const body = await bucket.getStream(e.key)
      return body === undefined ? undefined : Readable.from(body.stream)
    },
    close: () => { bucket.destroy() },
  }
}
