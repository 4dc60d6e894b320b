/**
 * `crossdock cache ls | prune | verify`: look after the pull-through cache from the command line —
 * CACHE_DIR, or the bucket with STORAGE=s3 (cache-view.ts: the same decisions and output over
 * either). All three work on the store directly (cache-index.ts, bucket-cache-view.ts), so they are
 * safe beside a running `serve`; prune and verify print one line per removal, like `crossdock gc`.
 */
import { createHash } from 'node:crypto'
import { pipeline } from 'node:stream/promises'
import { loadConfig } from '../config/index.js'
import { planRemovals } from '../cache/removal-plan.js'
import { createProgress, durationOption, formatBytes, parseOptions, sizeOption, UsageError, type Command } from './command.js'
import { fsCacheView } from './cache-index.js'
import { bucketCacheView } from './bucket-cache-view.js'
import type { CacheView, CacheViewEntry } from './cache-view.js'

const out = (line: string): void => { process.stdout.write(`${line}\n`) }

/** The cache the configuration names; `close` when done. */
function openView (): CacheView & { close: () => void } {
  const config = loadConfig()
  return config.storage.kind === 's3' ? bucketCacheView(config.storage) : { ...fsCacheView(config.cacheDir), close: () => {} }
}

async function withView<T> (fn: (view: CacheView) => Promise<T>): Promise<T> {
  const view = openView()
  try {
    return await fn(view)
  } finally {
    view.close()
  }
}

function describe (e: CacheViewEntry): string {
  const where = e.repository !== undefined ? ` ${e.host ?? '?'}/${e.repository}` : ''
  return `${e.kind} ${e.kind === 'tag' ? e.key.slice('tag:'.length).split('#')[0] : e.digest.value}${where}`
}

export const cacheLs: Command = {
  summary: 'Show the cache: size, entries, biggest repositories.',
  help: `Usage: crossdock cache ls [--top N] [--json]

Summarises CACHE_DIR (the bucket with STORAGE=s3): bytes and entries by kind (blob, manifest,
tag) and the N (default 10) repositories holding the most bytes. A blob counts for the repository
it was first fetched for (content is shared by digest); entries cached before crossdock recorded
that show as (unknown). In a bucket, finding repositories costs a HEAD per object: --top 0 skips it.
`,
  run: async (args) => {
    const opts = parseOptions(args, { top: { type: 'string', default: '10' }, json: { type: 'boolean' } })
    const top = Number(opts.top)
    if (!Number.isInteger(top) || top < 0) throw new UsageError(`--top=${JSON.stringify(opts.top)}: expected a whole number`)
    return await withView(async view => await listCache(view, top, opts.json === true))
  },
}

async function listCache (view: CacheView, top: number, json: boolean): Promise<number> {
  const dir = view.where
  const entries = await view.entries()
  if (top > 0) await view.origins(entries)
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
  kinds.tag.entries += await view.tagRecords?.() ?? 0
  const count = kinds.blob.entries + kinds.manifest.entries + kinds.tag.entries
  const bytes = entries.reduce((n, e) => n + e.size, 0)
  const biggest = [...repos].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, top).map(([repository, r]) => ({ repository, ...r }))
  if (json) {
    out(JSON.stringify({ dir, bytes, entries: count, kinds, repositories: biggest }, null, 2))
    return 0
  }
  out(`cache:        ${dir}`)
  out(`size:         ${formatBytes(bytes)} (${bytes} bytes) in ${count} entries`)
  out(`by kind:      ${kinds.blob.entries} blobs (${formatBytes(kinds.blob.bytes)}), ${kinds.manifest.entries} manifests (${formatBytes(kinds.manifest.bytes)}), ${kinds.tag.entries} tags`)
  if (biggest.length > 0) {
    out('')
    out(`${'SIZE'.padStart(12)}  ${'ENTRIES'.padStart(7)}  REPOSITORY`)
    for (const r of biggest) out(`${formatBytes(r.bytes).padStart(12)}  ${String(r.entries).padStart(7)}  ${r.repository}`)
  }
  return 0
}

export const cachePrune: Command = {
  summary: 'Remove cache entries not read for a while, or down to a size.',
  help: `Usage: crossdock cache prune [--older-than D] [--max-size S] [--dry-run]

--older-than D  remove entries not read for D (e.g. 7d, 12h; the syntax of CACHE_INACTIVE)
--max-size S    then remove least recently read entries until the cache holds at most S
                (e.g. 10g; the syntax of CACHE_MAX_SIZE)
--dry-run       print what would be removed, remove nothing
At least one of --older-than and --max-size. Prints each removal and the bytes reclaimed.
Safe while crossdock serves: it refetches what it no longer finds. With STORAGE=s3 it prunes the
bucket's blobs and manifests (reads recorded by every replica count); tag records stay.
`,
  run: async (args) => {
    const opts = parseOptions(args, { 'older-than': { type: 'string' }, 'max-size': { type: 'string' }, 'dry-run': { type: 'boolean' } })
    if (opts['older-than'] === undefined && opts['max-size'] === undefined) throw new UsageError('give --older-than, --max-size or both')
    const olderThanMs = opts['older-than'] === undefined ? undefined : durationOption('--older-than', opts['older-than'])
    const maxSize = opts['max-size'] === undefined ? undefined : sizeOption('--max-size', opts['max-size'])
    return await withView(async view => await pruneCache(view, { olderThanMs, maxSize, dryRun: opts['dry-run'] === true }))
  },
}

async function pruneCache (view: CacheView, opts: { olderThanMs?: number, maxSize?: number, dryRun: boolean }): Promise<number> {
  const entries = await view.entries()
  const plan = planRemovals(entries, { now: Date.now(), olderThanMs: opts.olderThanMs, maxSize: opts.maxSize })
  const doomed = [...plan.inactive, ...plan.forSize]
  await view.origins(doomed)
  const verb = opts.dryRun ? 'would remove' : 'removed'
  if (!opts.dryRun) await view.remove(doomed, entries)
  for (const e of doomed) out(`${verb} ${describe(e)} ${formatBytes(e.size)}, last read ${new Date(e.lastReadAt).toISOString()}`)
  const bytes = doomed.reduce((n, e) => n + e.size, 0)
  out(`${verb} ${doomed.length} entries, ${formatBytes(bytes)} (${bytes} bytes); ${plan.kept.length} entries, ${formatBytes(plan.kept.reduce((n, e) => n + e.size, 0))} left`)
  return 0
}

export const cacheVerify: Command = {
  summary: 'Re-hash every cached blob and manifest; drop corrupt or missing ones.',
  help: `Usage: crossdock cache verify [--dry-run]

Reads every content file in CACHE_DIR (every object of the bucket's blobs/ and manifests/ with
STORAGE=s3, streamed) and checks its length and digest against its index entry (its key).
Entries whose content is missing or whose bytes do not match are removed (with --dry-run only
reported), so the next pull fetches them again. Shows progress on a terminal. Exit 0 once the
cache is consistent (corrupt entries removed), 1 with --dry-run when some were found.
`,
  run: async (args) => {
    const opts = parseOptions(args, { 'dry-run': { type: 'boolean' } })
    return await withView(async view => await verifyCache(view, opts['dry-run'] === true))
  },
}

async function verifyCache (view: CacheView, dryRun: boolean): Promise<number> {
  const entries = await view.entries()
  const groups = view.contents(entries)
  const total = groups.reduce((n, es) => n + es[0].size, 0)
  const progress = createProgress()
  const bad: Array<{ entries: CacheViewEntry[], problem: string }> = []
  let done = 0
  let doneBytes = 0
  for (const group of groups) {
    progress.update(`verifying ${done}/${groups.length} files, ${formatBytes(doneBytes)} of ${formatBytes(total)}`)
    const problem = await check(view, group[0])
    if (problem !== undefined) bad.push({ entries: group, problem })
    done++
    doneBytes += group[0].size
  }
  progress.done()
  const verb = dryRun ? 'would remove' : 'removed'
  if (!dryRun) await view.remove(bad.flatMap(b => b.entries), entries)
  await view.origins(bad.flatMap(b => b.entries))
  for (const b of bad) for (const e of b.entries) out(`${verb} ${describe(e)}: ${b.problem}`)
  out(`verified ${groups.length} files (${formatBytes(total)}): ${groups.length - bad.length} ok, ${bad.length} ${dryRun ? 'bad' : 'bad and removed'}`)
  return dryRun && bad.length > 0 ? 1 : 0
}

/** What is wrong with an entry's content, or undefined when its length and digest match. */
async function check (view: CacheView, e: CacheViewEntry): Promise<string | undefined> {
  const hash = createHash(e.digest.algorithm)
  let length = 0
  try {
    const content = await view.open(e)
    if (content === undefined) return view.missing
    await pipeline(content, async function * (chunks: AsyncIterable<Buffer>) {
      for await (const c of chunks) { hash.update(c); length += c.length }
    })
  } catch (err) {
    return `unreadable: ${(err as Error).message}`
  }
  if (length !== e.size) return `length ${length}, index says ${e.size}`
  const hex = hash.digest('hex')
  return hex === e.digest.hex ? undefined : `content hashes to ${e.digest.algorithm}:${hex}`
}
