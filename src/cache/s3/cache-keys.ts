/**
 * Every object key of the pull-through cache in the bucket (STORAGE=s3) is built here, and only
 * here — the bucket counterpart of cache/cache-paths.ts. The hosted registry's keys (registry/storage/storage-keys.ts)
 * live beside these under the same S3_PREFIX; nothing here is under theirs, nor theirs under `cache/`.
 *
 *   <S3_PREFIX>/cache/
 *   ├── blobs/<alg>/<hex[0:2]>/<hex>             content, one copy per digest (layers, configs); written
 *   │                                            only by a publish after the digest and length matched
 *   │                                            (CompleteMultipartUpload of the fill's parts, or one
 *   │                                            PutObject); metadata: media type, origin host/repository
 *   ├── manifests/<alg>/<hex>                    manifest bytes (PutObject after hashing); Content-Type
 *   │                                            is the manifest's media type
 *   ├── tags/<host>/<repository>/<tag>/<accept>   tag record JSON (cache/tag-key.ts TagRecord); <accept>
 *   │                                            is the first 16 hex of sha256(normalized Accept)
 *   ├── fills/<alg>/<hex>/<token>/               a fill in progress by the replica holding <token>
 *   │   ├── meta.json                            {size?, mediaType?, origin?, startedAt}: written first
 *   │   ├── parts/<start, 16 digits>             the bytes [start, start + size) as they arrived, in
 *   │   │                                        parts of PART_SIZE (the last one shorter), so replicas
 *   │   │                                        following the fill read them while it runs
 *   │   └── done.json                            {size} once every part is written and verified
 *   └── atimes/<replica>/<ms, 16 digits>-<n>.json  a batch of read times {digest: ms}: hits are
 *                                                recorded in memory and flushed in batches, never one
 *                                                write per hit; the janitor folds them in and deletes them
 *
 * A fill's parts never count as cached: only blobs/ is served. A fill directory without a holder
 * (its leader died) is deleted by the janitor once it is old.
 */
import { createHash } from 'node:crypto'
import { assertName, isValidTag } from '../../oci/names.js'
import { tryParseDigest, type Digest } from '../../oci/digest.js'
import { normalizeAccept, type TagRef } from '../tag-key.js'

const OFFSET_WIDTH = 16
/** Fencing tokens and replica ids become key segments: a small alphabet, bounded length. */
const SEGMENT = /^[A-Za-z0-9._-]{1,128}$/
/** host[:port] as the upstream side accepts it. */
const HOST = /^[a-z0-9.-]{1,253}(:\d{1,5})?$/

export class CacheKeys {
  /** '<S3_PREFIX>/cache/' or 'cache/' */
  readonly root: string

  constructor (readonly prefix: string) {
    this.root = prefix === '' ? 'cache/' : `${prefix}/cache/`
  }

  get blobsPrefix (): string { return `${this.root}blobs/` }

  blob (d: Digest): string {
    return `${this.blobsPrefix}${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}`
  }

  /** The digest of a key under blobsPrefix, or undefined for a key that is not ours. */
  digestOfBlobKey (key: string): Digest | undefined {
    const m = /^([a-z0-9]+)\/[0-9a-f]{2}\/([0-9a-f]+)$/.exec(key.slice(this.blobsPrefix.length))
    return key.startsWith(this.blobsPrefix) && m !== null ? tryParseDigest(`${m[1]}:${m[2]}`) : undefined
  }

  get manifestsPrefix (): string { return `${this.root}manifests/` }

  manifest (d: Digest): string {
    return `${this.manifestsPrefix}${d.algorithm}/${d.hex}`
  }

  /** The digest of a key under manifestsPrefix, or undefined for a key that is not ours. */
  digestOfManifestKey (key: string): Digest | undefined {
    const m = /^([a-z0-9]+)\/([0-9a-f]+)$/.exec(key.slice(this.manifestsPrefix.length))
    return key.startsWith(this.manifestsPrefix) && m !== null ? tryParseDigest(`${m[1]}:${m[2]}`) : undefined
  }

  get tagsPrefix (): string { return `${this.root}tags/` }

  tag (ref: TagRef): string {
    const host = ref.host.toLowerCase()
    if (!HOST.test(host)) throw new Error(`cache-keys: invalid host ${JSON.stringify(host.slice(0, 100))}`)
    if (!isValidTag(ref.tag)) throw new Error(`cache-keys: invalid tag ${JSON.stringify(ref.tag.slice(0, 200))}`)
    const accept = createHash('sha256').update(normalizeAccept(ref.accept)).digest('hex').slice(0, 16)
    return `${this.tagsPrefix}${host}/${assertName(ref.repository)}/${ref.tag}/${accept}`
  }

  get fillsPrefix (): string { return `${this.root}fills/` }

  /** Every fill of `d`, whoever leads it. */
  fillsOf (d: Digest): string {
    return `${this.fillsPrefix}${d.algorithm}/${d.hex}/`
  }

  fill (d: Digest, token: string): string {
    return `${this.fillsOf(d)}${segment(token, 'fencing token')}/`
  }

  fillMeta (d: Digest, token: string): string { return `${this.fill(d, token)}meta.json` }
  fillDone (d: Digest, token: string): string { return `${this.fill(d, token)}done.json` }
  fillPartsPrefix (d: Digest, token: string): string { return `${this.fill(d, token)}parts/` }

  fillPart (d: Digest, token: string, start: number): string {
    if (!Number.isSafeInteger(start) || start < 0) throw new Error(`cache-keys: invalid part offset ${start}`)
    return `${this.fillPartsPrefix(d, token)}${String(start).padStart(OFFSET_WIDTH, '0')}`
  }

  /** The start offset of a part key of that fill, or undefined for a key that is not a part. */
  fillPartStart (d: Digest, token: string, key: string): number | undefined {
    const rest = key.slice(this.fillPartsPrefix(d, token).length)
    return new RegExp(`^\\d{${OFFSET_WIDTH}}$`).test(rest) ? Number(rest) : undefined
  }

  get atimesPrefix (): string { return `${this.root}atimes/` }

  /** One batch of read times flushed by `replica` at `at` (ms since the epoch); `n` tells batches of one ms apart. */
  atimeBatch (replica: string, at: number, n = 0): string {
    return `${this.atimesPrefix}${segment(replica, 'replica id')}/${String(Math.floor(at)).padStart(OFFSET_WIDTH, '0')}-${n}.json`
  }
}

function segment (value: string, what: string): string {
  if (!SEGMENT.test(value)) throw new Error(`cache-keys: invalid ${what} ${JSON.stringify(value.slice(0, 130))}`)
  return value
}
