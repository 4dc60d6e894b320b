/** Tags in the bucket: one small object per tag holding the digest; a PutObject replaces it whole. */
import type { TagStore } from '../../registry/storage/stores.js'
import { isValidTag } from '../../oci/names.js'
import type { S3Bucket } from './s3-bucket.js'
import type { S3Keys } from './s3-keys.js'

export class S3TagStore implements TagStore {
  constructor (private readonly bucket: S3Bucket, private readonly keys: S3Keys) {}

  async resolve (name: string, tag: string): Promise<string | undefined> {
    return (await this.bucket.getBytes(this.keys.tagLink(name, tag)))?.toString('utf8').trim()
  }

  async set (name: string, tag: string, digest: string): Promise<void> {
    await this.bucket.put(this.keys.tagLink(name, tag), digest)
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
