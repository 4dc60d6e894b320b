/**
 * Manifests on the local disk. A manifest's bytes are content like any blob (blobs/, shared, gc'd
 * with the rest) and are linked into the repository's `_layers` too, so `GET /v2/<name>/blobs/<d>`
 * serves them as distribution does. What makes it a manifest of the repository is its revision
 * link, which carries the media type (served as Content-Type) and the subject, if any.
 */
import { promises as fsp } from 'node:fs'
import { join } from 'node:path'
import type { Descriptor, ManifestPut, ManifestStore, StoredManifest } from './stores.js'
import type { StoragePaths } from './paths.js'
import type { FsBlobStore } from './fs-blob-store.js'
import { readIfExists, readdirIfExists, statIfExists, unlinkIfExists, writeFileAtomic } from './fs-files.js'
import { isValidName } from '../../oci/names.js'
import { tryParseDigest, type Digest } from '../../oci/digest.js'

interface RevisionRecord {
  mediaType: string
  size: number
  subject?: string
}

export class FsManifestStore implements ManifestStore {
  constructor (private readonly paths: StoragePaths, private readonly blobs: FsBlobStore) {}

  async get (name: string, digest: Digest): Promise<StoredManifest | undefined> {
    const record = await this.revision(name, digest)
    if (record === undefined) return undefined
    const body = await readIfExists(this.paths.blob(digest))
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
    await writeFileAtomic(this.paths, this.paths.revisionLink(name, m.digest), JSON.stringify(record))
    if (m.subject !== undefined && m.referrer !== undefined) {
      await writeFileAtomic(this.paths, this.paths.referrerLink(name, m.subject, m.digest), JSON.stringify(m.referrer))
    }
  }

  async delete (name: string, digest: Digest): Promise<boolean> {
    const record = await this.revision(name, digest)
    if (record === undefined) return false
    const subject = record.subject === undefined ? undefined : tryParseDigest(record.subject)
    if (subject !== undefined) await unlinkIfExists(this.paths.referrerLink(name, subject, digest))
    await this.blobs.unlink(name, digest)
    return await unlinkIfExists(this.paths.revisionLink(name, digest))
  }

  async referrers (name: string, subject: Digest): Promise<Descriptor[]> {
    const dir = this.paths.referrersDir(name, subject)
    const out: Descriptor[] = []
    for (const entry of (await readdirIfExists(dir)).sort()) {
      const raw = await readIfExists(join(dir, entry))
      if (raw === undefined) continue
      const descriptor = JSON.parse(raw.toString('utf8')) as Descriptor
      const digest = tryParseDigest(descriptor.digest)
      // A referrer whose revision was deleted concurrently is not listed.
      if (digest !== undefined && await statIfExists(this.paths.revisionLink(name, digest)) !== undefined) out.push(descriptor)
    }
    return out
  }

  async list (name: string): Promise<Array<{ digest: Digest, modifiedAt: number }>> {
    const out: Array<{ digest: Digest, modifiedAt: number }> = []
    const dir = this.paths.revisionsDir(name)
    for (const algorithm of await readdirIfExists(dir)) {
      for (const hex of await readdirIfExists(join(dir, algorithm))) {
        const digest = tryParseDigest(`${algorithm}:${hex}`)
        if (digest === undefined) continue // not ours (stray file)
        const st = await statIfExists(this.paths.revisionLink(name, digest))
        if (st !== undefined) out.push({ digest, modifiedAt: st.mtimeMs })
      }
    }
    return out
  }

  async repositories (): Promise<string[]> {
    const found: string[] = []
    const walk = async (dir: string, prefix: string[]): Promise<void> => {
      let entries
      try {
        entries = await fsp.readdir(dir, { withFileTypes: true })
      } catch {
        return
      }
      for (const e of entries) {
        if (!e.isDirectory()) continue
        if (e.name === '_manifests' && prefix.length > 0) { found.push(prefix.join('/')); continue }
        if (e.name.startsWith('_')) continue
        await walk(join(dir, e.name), [...prefix, e.name])
      }
    }
    await walk(this.paths.repositoriesDir, [])
    return found.filter(isValidName).sort()
  }

  private async revision (name: string, digest: Digest): Promise<RevisionRecord | undefined> {
    const raw = await readIfExists(this.paths.revisionLink(name, digest))
    return raw === undefined ? undefined : JSON.parse(raw.toString('utf8')) as RevisionRecord
  }
}
