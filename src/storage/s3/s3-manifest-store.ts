/**
 * Manifests in the bucket, as in the directory store: the bytes are content under blobs/ (linked
 * into `_layers` too, so a blob GET serves them), and the revision link carries the media type and
 * the subject. Each object is one PutObject, so each becomes visible whole.
 */
import type { Descriptor, ManifestPut, ManifestStore, StoredManifest } from '../../registry/storage/stores.js'
import { isValidName } from '../../oci/names.js'
import { tryParseDigest, type Digest } from '../../oci/digest.js'
import type { S3Bucket } from '../../objects/s3-bucket.js'
import type { S3Keys } from './s3-keys.js'
import type { S3BlobStore } from './s3-blob-store.js'

interface RevisionRecord {
  mediaType: string
  size: number
  subject?: string
}

const REVISIONS = '/_manifests/revisions/'

export class S3ManifestStore implements ManifestStore {
  constructor (private readonly bucket: S3Bucket, private readonly keys: S3Keys, private readonly blobs: S3BlobStore) {}

  async get (name: string, digest: Digest): Promise<StoredManifest | undefined> {
    const record = await this.revision(name, digest)
    if (record === undefined) return undefined
    const body = await this.bucket.getBytes(this.keys.blob(digest))
    if (body === undefined) return undefined
    return { descriptor: { mediaType: record.mediaType, digest: digest.value, size: body.length }, subject: record.subject, body }
  }

  async stat (name: string, digest: Digest, opts: { retain?: boolean } = {}): Promise<Descriptor | undefined> {
    const record = await this.revision(name, digest)
    if (record === undefined) return undefined
    const content = await this.blobs.stat(name, digest, opts)
    if (content === undefined) return undefined
    return { mediaType: record.mediaType, digest: digest.value, size: content.size }
  }

  async put (name: string, m: ManifestPut): Promise<void> {
    await this.blobs.putBytes(m.digest, m.body)
    await this.blobs.link(name, m.digest)
    const record: RevisionRecord = { mediaType: m.mediaType, size: m.body.length, ...(m.subject !== undefined ? { subject: m.subject.value } : {}) }
    await this.bucket.put(this.keys.revisionLink(name, m.digest), JSON.stringify(record), { contentType: 'application/json' })
    if (m.subject !== undefined && m.referrer !== undefined) {
      await this.bucket.put(this.keys.referrerLink(name, m.subject, m.digest), JSON.stringify(m.referrer), { contentType: 'application/json' })
    }
  }

  async delete (name: string, digest: Digest): Promise<boolean> {
    const record = await this.revision(name, digest)
    if (record === undefined) return false
    const subject = record.subject === undefined ? undefined : tryParseDigest(record.subject)
    if (subject !== undefined) await this.bucket.delete(this.keys.referrerLink(name, subject, digest))
    await this.blobs.unlink(name, digest)
    await this.bucket.delete(this.keys.revisionLink(name, digest))
    return true
  }

  async referrers (name: string, subject: Digest): Promise<Descriptor[]> {
    const out: Descriptor[] = []
    for await (const o of this.bucket.list(this.keys.referrersPrefix(name, subject))) {
      const raw = await this.bucket.getBytes(o.key)
      if (raw === undefined) continue
      const descriptor = JSON.parse(raw.toString('utf8')) as Descriptor
      const digest = tryParseDigest(descriptor.digest)
      // A referrer whose revision was deleted concurrently is not listed.
      if (digest !== undefined && await this.bucket.head(this.keys.revisionLink(name, digest)) !== undefined) out.push(descriptor)
    }
    return out
  }

  async list (name: string): Promise<Array<{ digest: Digest, modifiedAt: number }>> {
    const prefix = this.keys.revisionsPrefix(name)
    const out: Array<{ digest: Digest, modifiedAt: number }> = []
    for await (const o of this.bucket.list(prefix)) {
      const m = /^([a-z0-9]+)\/([0-9a-f]+)$/.exec(o.key.slice(prefix.length))
      const digest = m === null ? undefined : tryParseDigest(`${m[1]}:${m[2]}`)
      if (digest !== undefined) out.push({ digest, modifiedAt: o.lastModified })
    }
    return out
  }

  async repositories (): Promise<string[]> {
    const found = new Set<string>()
    const root = this.keys.repositoriesPrefix
    for await (const o of this.bucket.list(root)) {
      const rel = o.key.slice(root.length)
      const at = rel.indexOf(REVISIONS)
      if (at > 0) found.add(rel.slice(0, at))
    }
    return [...found].filter(isValidName).sort()
  }

  private async revision (name: string, digest: Digest): Promise<RevisionRecord | undefined> {
    const raw = await this.bucket.getBytes(this.keys.revisionLink(name, digest))
    return raw === undefined ? undefined : JSON.parse(raw.toString('utf8')) as RevisionRecord
  }
}
