/**
 * Cached tag records in the cacache directory (CacheTagStore, stores.ts): one index entry per
 * (host, repository, tag, Accept) key (tag-key.ts) whose metadata is the record. The entry uses its
 * manifest's integrity, so `get.info(tagKey).path` is the manifest's content, which it never owns.
 */
import cacache from 'cacache'
import { tryParseDigest } from '../oci/digest.js'
import { contentPath, integrityOf } from './cache-paths.js'
import { TAG_SIZE, type CacacheEntries } from './cacache-entries.js'
import { tagKey, type TagRecord, type TagRef } from './tag-key.js'
import type { CacheTagStore } from './stores.js'

export class CacacheTagStore implements CacheTagStore {
  constructor (private readonly entries: CacacheEntries) {}

  get (ref: TagRef): TagRecord | undefined {
    return this.entries.bound.get(tagKey(ref))?.record
  }

  async lookup (ref: TagRef): Promise<TagRecord | undefined> {
    return this.get(ref)
  }

  async put (ref: TagRef, record: TagRecord): Promise<void> {
    const { entries } = this
    const d = tryParseDigest(record.digest)
    if (d === undefined) return
    const key = tagKey(ref)
    entries.bound.add(key, { kind: 'tag', digest: d, size: TAG_SIZE, path: contentPath(entries.dir, d), record: { ...record }, lastReadAt: entries.now() })
    await entries.settledRemovals(key)
    // One line per tag bucket instead of an ever-growing append log; losing it in a crash between
    // the two calls only forgets one tag.
    await cacache.rm.entry(entries.dir, key, { removeFully: true })
    await cacache.index.insert(entries.dir, key, integrityOf(d), { size: record.size, metadata: { ...record } })
  }
}
