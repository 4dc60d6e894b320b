/** Tags over the object primitive: one small object per tag holding the digest, replaced whole. */
import type { TagStore } from './stores.js'
import type { StorageKeys } from './storage-keys.js'
import type { ObjectStore } from '../../objects/object-store.js'
import { isValidTag } from '../../oci/names.js'
import { tryParseDigest, type Digest } from '../../oci/digest.js'

export class ObjectTagStore implements TagStore {
  constructor (private readonly objects: ObjectStore, private readonly keys: StorageKeys) {}

  async resolve (name: string, tag: string): Promise<Digest | undefined> {
    const key = this.keys.tagLink(name, tag)
    const raw = await this.objects.read(key)
    if (raw === undefined) return undefined
    const digest = tryParseDigest(raw.toString('utf8').trim())
    if (digest === undefined) throw new Error(`tag link ${key} holds no valid digest`)
    return digest
  }

  async set (name: string, tag: string, digest: Digest): Promise<void> {
    await this.objects.write(this.keys.tagLink(name, tag), digest.value)
  }

  async delete (name: string, tag: string): Promise<boolean> {
    return await this.objects.delete(this.keys.tagLink(name, tag))
  }

  async list (name: string): Promise<string[] | undefined> {
    const prefix = this.keys.tagsPrefix(name)
    const tags: string[] = []
    for await (const o of this.objects.list(prefix)) tags.push(o.key.slice(prefix.length))
    // A repository with no tags still exists while it holds anything (as its directory would).
    if (tags.length === 0 && !await this.objects.any(this.keys.repository(name))) return undefined
    // spec: tags in lexical order. Plain code-point order, as distribution does.
    return tags.filter(isValidTag).sort()
  }
}
