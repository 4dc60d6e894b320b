/** Tags in the bucket: one small object per tag holding the digest; a PutObject replaces it whole. */
import type { TagStore } from '../../registry/storage/stores.js'
import { isValidTag } from '../../oci/names.js'
import { tryParseDigest, type Digest } from '../../oci/digest.js'
import type { S3Bucket } from '../../objects/s3-bucket.js'
import type { S3Keys } from './s3-keys.js'

export class S3TagStore implements TagStore {
  constructor (private readonly bucket: S3Bucket, private readonly keys: S3Keys) {}

  async resolve (name: string, tag: string): Promise<Digest | undefined> {
    const key = this.keys.tagLink(name, tag)
    const raw = await this.bucket.getBytes(key)
    if (raw === undefined) return undefined
    const digest = tryParseDigest(raw.toString('utf8').trim())
    if (digest === undefined) throw new Error(`tag object ${key} holds no valid digest`)
    return digest
  }

  async set (name: string, tag: string, digest: Digest): Promise<void> {
    await this.bucket.put(this.keys.tagLink(name, tag), digest.value)
  }

  async delete (name: string, tag: string): Promise<boolean> {
    const key = this.keys.tagLink(name, tag)
    if (await this.bucket.head(key) === undefined) return false
    await this.bucket.delete(key)
    return true
  }

  async list (name: string): Promise<string[] | undefined> {
    const prefix = this.keys.tagsPrefix(name)
    const tags: string[] = []
    for await (const o of this.bucket.list(prefix)) tags.push(o.key.slice(prefix.length))
    // A repository with no tags still exists while it holds anything (as its directory would).
    if (tags.length === 0 && !await this.bucket.any(this.keys.repository(name))) return undefined
    // spec: tags in lexical order. Plain code-point order, as distribution does.
    return tags.filter(isValidTag).sort()
  }
}
