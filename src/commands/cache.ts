/**
 * `crossdock cache ls | prune | verify`: look after the pull-through cache (CACHE_DIR) from the
 * command line. All three work on the index directly (cache-index.ts), so they are safe beside a
 * running `serve`; prune and verify print one line per removal, like `crossdock gc`.
 */
import { createReadStream } from 'node:fs'
import { createHash } from 'node:crypto'
import { pipeline } from 'node:stream/promises'
import { loadConfig } from '../config/index.js'
import { createProgress, durationOption, formatBytes, parseOptions, sizeOption, UsageError, type Command } from './command.js'
import { readCacheIndex, removeEntries, type IndexedEntry } from './cache-index.js'

const out = (line: string): void => { process.stdout.write(`${line}\n`) }

function cacheDir (): string {
  return loadConfig().cacheDir
}

function describe (e: IndexedEntry): string {
  const where = e.repository !== undefined ? ` ${e.host ?? '?'}/${e.repository}` : ''
  return `${e.kind} ${e.kind === 'tag' ? e.key.slice('tag:'.length).split('#')[0] : e.digest.value}${where}`
}

export const cacheLs: Command = {
  summary: 'Show the cache: size, entries, biggest repositories.',
  help: `Usage: crossdock cache ls [--top N] [--json]

Summarises CACHE_DIR: bytes and entries by kind (blob, manifest, tag) and the N (default 10)
repositories holding the most bytes. A blob counts for the repository it was first fetched for
(content is shared by digest); entries cached before crossdock recorded that show as (unknown).
`,
  run: async (args) => {
    const opts = parseOptions(args, { top: { type: 'string', default: '10' }, json: { type: 'boolean' } })
    const top = Number(opts.top)
    if (!Number.isInteger(top) || top < 0) throw new UsageError(`--top=${JSON.stringify(opts.top)}: expected a whole number`)
    const dir = cacheDir()
    const entries = await readCacheIndex(dir)
    const kinds = { blob: { entries: 0, bytes: 0 }, manifest: { entries: 0, bytes: 0 }, tag: { entries: 0, bytes: 0 } }
    const repos = new Map<string, { bytes: number, entries: number }>()
    for (const e of entries) {
      kinds[e.kind].entries++
      kinds[e.kind].bytes += e.size
      if (e.kind === 'tag') continue
      const name = e.repository !== undefined ? `${e.host ?? '?'}/${e.repository}` : '(unknown)'
      const r = repos.get(name) ?? { bytes: 0, entries: 0 }
      r.bytes += e.size
      r.entries++
      repos.set(name, r)
    }
    const bytes = entries.reduce((n, e) => n + e.size, 0)
    const biggest = [...repos].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, top).map(([repository, r]) => ({ repository, ...r }))
    if (opts.json === true) {
      out(JSON.stringify({ dir, bytes, entries: entries.length, kinds, repositories: biggest }, null, 2))
      return 0
    }
    out(`cache:        ${dir}`)
    out(`size:         ${formatBytes(bytes)} (${bytes} bytes) in ${entries.length} entries`)
    out(`by kind:      ${kinds.blob.entries} blobs (${formatBytes(kinds.blob.bytes)}), ${kinds.manifest.entries} manifests (${formatBytes(kinds.manifest.bytes)}), ${kinds.tag.entries} tags`)
    if (biggest.length > 0) {
      out('')
      out(`${'SIZE'.padStart(12)}  ${'ENTRIES'.padStart(7)}  REPOSITORY`)
      for (const r of biggest) out(`${formatBytes(r.bytes).padStart(12)}  ${String(r.entries).padStart(7)}  ${r.repository}`)
    }
    return 0
  },
}

export const cachePrune: Command = {
  summary: 'Remove cache entries not read for a while, or down to a size.',
  help: `Usage: crossdock cache prune [--older-than D] [--max-size S] [--dry-run]

--older-than D  remove entries not read for D (e.g. 7d, 12h; the syntax of CACHE_INACTIVE)
--max-size S    then remove least recently read entries until the cache holds at most S
                (e.g. 10g; the syntax of CACHE_MAX_SIZE)
--dry-run       print what would be removed, remove nothing
At least one of --older-than and --max-size. Prints each removal and the bytes reclaimed.
Safe while crossdock serves: it refetches what it no longer finds.
`,
  run: async (args) => {
    const opts = parseOptions(args, { 'older-than': { type: 'string' }, 'max-size': { type: 'string' }, 'dry-run': { type: 'boolean' } })
    if (opts['older-than'] === undefined && opts['max-size'] === undefined) throw new UsageError('give --older-than, --max-size or both')
    const olderThan = opts['older-than'] === undefined ? undefined : durationOption('--older-than', opts['older-than'])
    const maxSize = opts['max-size'] === undefined ? undefined : sizeOption('--max-size', opts['max-size'])
    const dir = cacheDir()
    const entries = await readCacheIndex(dir)
    // Least recently read first: the order eviction would take.
    entries.sort((a, b) => a.lastReadAt - b.lastReadAt)
    const doomed: IndexedEntry[] = []
    const now = Date.now()
    let kept = entries
    if (olderThan !== undefined) {
      doomed.push(...entries.filter(e => now - e.lastReadAt > olderThan))
      kept = entries.filter(e => now - e.lastReadAt <= olderThan)
    }
    if (maxSize !== undefined) {
      let total = kept.reduce((n, e) => n + e.size, 0)
      let i = 0
      while (total > maxSize && i < kept.length) { total -= kept[i].size; doomed.push(kept[i]); i++ }
      kept = kept.slice(i)
    }
    const verb = opts['dry-run'] === true ? 'would remove' : 'removed'
    if (opts['dry-run'] !== true) await removeEntries(dir, doomed, entries)
    for (const e of doomed) out(`${verb} ${describe(e)} ${formatBytes(e.size)}, last read ${new Date(e.lastReadAt).toISOString()}`)
    const bytes = doomed.reduce((n, e) => n + e.size, 0)
    out(`${verb} ${doomed.length} entries, ${formatBytes(bytes)} (${bytes} bytes); ${kept.length} entries, ${formatBytes(kept.reduce((n, e) => n + e.size, 0))} left`)
    return 0
  },
}

export const cacheVerify: Command = {
  summary: 'Re-hash every cached blob and manifest; drop corrupt or missing ones.',
  help: `Usage: crossdock cache verify [--dry-run]

Reads every content file in CACHE_DIR and checks its length and digest against its index entry.
Entries whose file is missing or whose bytes do not match are removed (with --dry-run only
reported), so the next pull fetches them again. Shows progress on a terminal. Exit 0 once the
cache is consistent (corrupt entries removed), 1 with --dry-run when some were found.
`,
  run: async (args) => {
    const opts = parseOptions(args, { 'dry-run': { type: 'boolean' } })
    const dir = cacheDir()
    const entries = await readCacheIndex(dir)
    // blob:X and manifest:X share one file: hash it once.
    const byContent = new Map<string, IndexedEntry[]>()
    for (const e of entries) {
      if (e.kind === 'tag') continue
      byContent.set(e.digest.value, [...(byContent.get(e.digest.value) ?? []), e])
    }
    const total = [...byContent.values()].reduce((n, es) => n + es[0].size, 0)
    const progress = createProgress()
    const bad: Array<{ entries: IndexedEntry[], problem: string }> = []
    let done = 0
    let doneBytes = 0
    for (const group of byContent.values()) {
      progress.update(`verifying ${done}/${byContent.size} files, ${formatBytes(doneBytes)} of ${formatBytes(total)}`)
      const problem = await check(group[0])
      if (problem !== undefined) bad.push({ entries: group, problem })
      done++
      doneBytes += group[0].size
    }
    progress.done()
    const verb = opts['dry-run'] === true ? 'would remove' : 'removed'
    if (opts['dry-run'] !== true) {
      await removeEntries(dir, bad.flatMap(b => b.entries), entries)
    }
    for (const b of bad) for (const e of b.entries) out(`${verb} ${describe(e)}: ${b.problem}`)
    out(`verified ${byContent.size} files (${formatBytes(total)}): ${byContent.size - bad.length} ok, ${bad.length} ${opts['dry-run'] === true ? 'bad' : 'bad and removed'}`)
    return opts['dry-run'] === true && bad.length > 0 ? 1 : 0
  },
}

/** What is wrong with an entry's content file, or undefined when its length and digest match. */
async function check (e: IndexedEntry): Promise<string | undefined> {
  const hash = createHash(e.digest.algorithm)
  let length = 0
  try {
    await pipeline(createReadStream(e.path, { highWaterMark: 1 << 20 }), async function * (chunks: AsyncIterable<Buffer>) {
      for await (const c of chunks) { hash.update(c); length += c.length }
    })
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'content file missing' : `unreadable: ${(err as Error).message}`
  }
  if (length !== e.size) return `length ${length}, index says ${e.size}`
  const hex = hash.digest('hex')
  return hex === e.digest.hex ? undefined : `content hashes to ${e.digest.algorithm}:${hex}`
}
