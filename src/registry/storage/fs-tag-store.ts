/** Tags on the local disk: one small file per tag holding the digest, replaced by rename. */
import type { TagStore } from './stores.js'
import type { StoragePaths } from './paths.js'
import { readIfExists, readdirIfExists, statIfExists, unlinkIfExists, writeFileAtomic } from './fs-files.js'
import { isValidTag } from '../../oci/names.js'

export class FsTagStore implements TagStore {
  constructor (private readonly paths: StoragePaths) {}

  async resolve (name: string, tag: string): Promise<string | undefined> {
    const raw = await readIfExists(this.paths.tagLink(name, tag))
    return raw?.toString('utf8').trim()
  }

  async set (name: string, tag: string, digest: string): Promise<void> {
    await writeFileAtomic(this.paths, this.paths.tagLink(name, tag), digest)
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
