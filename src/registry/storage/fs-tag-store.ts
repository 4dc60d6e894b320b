/** Tags on the local disk: one small file per tag holding the digest, replaced by rename. */
import type { TagStore } from './stores.js'
import type { StoragePaths } from './paths.js'
import { readIfExists, readdirIfExists, statIfExists, unlinkIfExists, writeFileAtomic } from './fs-files.js'
import { isValidTag } from '../../oci/names.js'
import { tryParseDigest, type Digest } from '../../oci/digest.js'

export class FsTagStore implements TagStore {
  constructor (private readonly paths: StoragePaths) {}

  async resolve (name: string, tag: string): Promise<Digest | undefined> {
    const path = this.paths.tagLink(name, tag)
    const raw = await readIfExists(path)
    if (raw === undefined) return undefined
    const digest = tryParseDigest(raw.toString('utf8').trim())
    if (digest === undefined) throw new Error(`tag link ${path} holds no valid digest`)
    return digest
  }

  async set (name: string, tag: string, digest: Digest): Promise<void> {
    await writeFileAtomic(this.paths, this.paths.tagLink(name, tag), digest.value)
  }

  async delete (name: string, tag: string): Promise<boolean> {
    return await unlinkIfExists(this.paths.tagLink(name, tag))
  }

  async list (name: string): Promise<string[] | undefined> {
    if (await statIfExists(this.paths.repository(name)) === undefined) return undefined
    // spec: tags in lexical order. Plain code-point order, as distribution does.
    return (await readdirIfExists(this.paths.tagsDir(name))).filter(isValidTag).sort()
  }
}
