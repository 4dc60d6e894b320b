/**
 * The pull-through cache as the operator commands see it: cacache's index read directly, never
 * through openCacheStore (which sweeps tmp/ and would cut the fills of a `serve` running on the same
 * CACHE_DIR). Layout and key grammar: src/cache/cache-paths.ts and tag-key.ts.
 *
 * Removal follows the store's rules: `blob:X` and `manifest:X` share X's content file, which goes
 * only when neither key is left; tag records never own content. A running `serve` notices removed
 * files on its next read of them (the entry is dropped and refetched); its size accounting catches
 * up at its next start.
 */
import { createReadStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import cacache from 'cacache'
import { blobKey, integrityOf, manifestKey, recencyPath } from '../cache/cache-paths.js'
import { meaningOf } from '../cache/cacache-entries.js'
import type { Digest } from '../oci/digest.js'
import type { CacheView, CacheViewEntry } from './cache-view.js'

export interface IndexedEntry {
  key: string
  kind: 'blob' | 'manifest' | 'tag'
  /** The content's digest (for a tag: the manifest it points at). */
  digest: Digest
  /** Bytes on disk; 0 for a tag record (its bytes are the manifest's). */
  size: number
  /** The content file (for a tag: its manifest's). */
  path: string
  /** Last read (crossdock-recency.json), else when it was written; ms since the epoch. */
  lastReadAt: number
  /** Upstream host and repository it was first fetched for; absent for entries cached before crossdock recorded it. */
  host?: string
  repository?: string
}

/** CACHE_DIR for the cache commands: the index read directly, content files under it. */
export function fsCacheView (dir: string): CacheView {
  const files = new Map<string, string>()
  return {
    where: dir,
    missing: 'content file missing',
    entries: async () => {
      const entries = await readCacheIndex(dir)
      for (const e of entries) files.set(e.key, e.path)
      return entries
    },
    origins: async () => {},
    remove: async (doomed, all) => { await removeEntries(dir, doomed, all) },
    // blob:X and manifest:X share one file: hashed once.
    contents: entries => {
      const byContent = new Map<string, CacheViewEntry[]>()
      for (const e of entries) {
        if (e.kind !== 'tag') byContent.set(e.digest.value, [...(byContent.get(e.digest.value) ?? []), e])
      }
      return [...byContent.values()]
    },
    open: async e => {
      const path = files.get(e.key)
      return path === undefined ? undefined : await openFile(path)
    },
  }
}

/** The file as a stream once it is open; undefined when it does not exist. */
async function openFile (path: string): Promise<Readable | undefined> {
  const stream = createReadStream(path, { highWaterMark: 1 << 20 })
  return await new Promise((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException): void => { if (err.code === 'ENOENT') resolve(undefined); else reject(err) }
    stream.once('error', failed)
    stream.once('open', () => { stream.off('error', failed); resolve(stream) })
  })
}

/** Every index entry the store would load ([] when `dir` does not exist); entries it would drop (unknown key, bad digest) are left out. */
export async function readCacheIndex (dir: string): Promise<IndexedEntry[]> {
  const recency = await readRecency(dir)
  const out: IndexedEntry[] = []
  for (const e of Object.values(await cacache.ls(dir))) {
    // The store's own index rules (cacache-entries.ts), so both agree on what an entry means.
    const m = meaningOf(e)
    if (m === undefined) continue
    const lastReadAt = recency.get(e.key) ?? e.time
    if (m.kind === 'tag') out.push({ key: e.key, kind: 'tag', digest: m.digest, size: 0, path: e.path, lastReadAt, ...parseTagKey(e.key) })
    else out.push({ key: e.key, kind: m.kind, digest: m.digest, size: e.size ?? 0, path: e.path, lastReadAt, host: m.host, repository: m.repository })
  }
  return out
}

/**
 * Removes `entries` (some of `all`, the index as read) from the index, and content no key left in
 * `all` uses. Idempotent: an entry already gone is not an error.
 */
export async function removeEntries (dir: string, entries: CacheViewEntry[], all: CacheViewEntry[]): Promise<void> {
  const remaining = new Set(all.map(e => e.key))
  for (const e of entries) remaining.delete(e.key)
  for (const e of entries) {
    await cacache.rm.entry(dir, e.key, { removeFully: true })
    if (e.kind === 'tag') continue
    if (!remaining.has(blobKey(e.digest)) && !remaining.has(manifestKey(e.digest))) {
      await cacache.rm.content(dir, integrityOf(e.digest)).catch(err => { if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err })
    }
  }
}

/** `tag:<host>/<repository>:<tag>#<accept>` (tagKey in tag-key.ts): host has no `/`, a tag no `:`. */
function parseTagKey (key: string): { host?: string, repository?: string } {
  const ref = key.slice('tag:'.length).split('#')[0]
  const slash = ref.indexOf('/')
  const colon = ref.lastIndexOf(':')
  if (slash < 1 || colon < slash) return {}
  return { host: ref.slice(0, slash), repository: ref.slice(slash + 1, colon) }
}

async function readRecency (dir: string): Promise<Map<string, number>> {
  try {
    const parsed = JSON.parse(await readFile(recencyPath(dir), 'utf8')) as { entries?: Record<string, unknown> }
    return new Map(Object.entries(parsed.entries ?? {}).filter((kv): kv is [string, number] => typeof kv[1] === 'number'))
  } catch {
    return new Map()
  }
}
