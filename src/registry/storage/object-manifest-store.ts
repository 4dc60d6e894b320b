/**
 * Manifests over the object primitive. A manifest's bytes are content like any blob (blobs/,
 * shared, gc'd with the rest) and are linked into the repository's `_layers` too, so
 * `GET /v2/<name>/blobs/<d>` serves them as distribution does. What makes it a manifest of the
 * repository is its revision link, which carries the media type (served as Content-Type) and the
 * subject, if any. Each object is written whole, so each becomes visible whole; the revision link
 * is written after the bytes and their link, so `get` never finds a revision without its bytes.
 */
import type { Descriptor, ManifestPut, ManifestStore, StoredManifest } from './stores.js'
import type { StorageKeys } from './storage-keys.js'
import type { ObjectBlobStore } from './object-blob-store.js'
import type { ObjectStore } from '../../objects/object-store.js'
import { isValidName } from '../../oci/names.js'
import { tryParseDigest, type Digest } from '../../oci/digest.js'

interface RevisionRecord {
  mediaType: string
  size: number
  subject?: string
}

export class ObjectManifestStore implements ManifestStore {
  constructor (private readonly objects: ObjectStore, private readonly keys: StorageKeys, private readonly blobs: ObjectBlobStore) {}

  async get (name: string, digest: Digest): Promise<StoredManifest | undefined> {
    const record = await this.revision(name, digest)
    if (record === undefined) return undefined
    const body = await this.objects.read(this.keys.blob(digest))
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
    await this.objects.write(this.keys.revisionLink(name, m.digest), JSON.stringify(record))
    if (m.subject !== undefined && m.referrer !== undefined) {
      await this.objects.write(this.keys.referrerLink(name, m.subject, m.digest), JSON.stringify(m.referrer))
    }
  }

  async delete (name: string, digest: Digest): Promise<boolean> {
    const record = await this.revision(name, digest)
    if (record === undefined) return false
    const subject = record.subject === undefined ? undefined : tryParseDigest(record.subject)
    if (subject !== undefined) await this.objects.delete(this.keys.referrerLink(name, subject, digest))
    await this.blobs.unlink(name, digest)
    return await this.objects.delete(this.keys.revisionLink(name, digest))
  }

  async referrers (name: string, subject: Digest): Promise<Descriptor[]> {
    const out: Descriptor[] = []
    for await (const o of this.objects.list(this.keys.referrersPrefix(name, subject))) {
      const raw = await this.objects.read(o.key)
      if (raw === undefined) continue
      const descriptor = JSON.parse(raw.toString('utf8')) as Descriptor
      const digest = tryParseDigest(descriptor.digest)
      // A referrer whose revision was deleted concurrently is not listed.
      if (digest !== undefined && await this.objects.head(this.keys.revisionLink(name, digest)) !== undefined) out.push(descriptor)
    }
    return out
  }

  async list (name: string): Promise<Array<{ digest: Digest, modifiedAt: number }>> {
    const prefix = this.keys.revisionsPrefix(name)
    const out: Array<{ digest: Digest, modifiedAt: number }> = []
    for await (const o of this.objects.list(prefix)) {
      const m = /^([a-z0-9]+)\/([0-9a-f]+)$/.exec(o.key.slice(prefix.length))
      const digest = m === null ? undefined : tryParseDigest(`${m[1]}:${m[2]}`)
      if (digest !== undefined) out.push({ digest, modifiedAt: o.modifiedAt }) // else not ours (stray)
    }
    return out
  }

  /**
   * Walks repositories/ level by level (a listing of names, not of every link below them): a name
   * is a repository when `_manifests` is among its children; `_`-names are never descended.
   */
  async repositories (): Promise<string[]> {
    const found: string[] = []
    const walk = async (prefix: string, name: string[]): Promise<void> => {
      for (const child of await this.objects.children(prefix)) {
        if (child === '_manifests' && name.length > 0) found.push(name.join('/'))
        else if (!child.startsWith('_')) await walk(`${prefix}${child}/`, [...name, child])
      }
    }
    await walk(this.keys.repositoriesPrefix, [])
    return found.filter(isValidName).sort()
  }

  private async revision (name: string, digest: Digest): Promise<RevisionRecord | undefined> {
    const raw = await this.objects.read(this.keys.revisionLink(name, digest))
    return raw === undefined ? undefined : JSON.parse(raw.toString('utf8')) as RevisionRecord
  }
}
