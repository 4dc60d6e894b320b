/**
 * `crossdock gc`: mark and sweep of the hosted registry's blobs, safe while the registry serves.
 *
 *   mark:  every manifest revision of every repository (with --delete-untagged: only those reachable
 *          from a tag, through index entries and referrers, and the untagged rest is deleted), plus
 *          the config, layers and entries each one references
 *   sweep: every blob not marked and not written or retained since `cutoff` is removed
 *
 * Concurrency, on one process or many replicas: a push commits its blobs and retains every blob its
 * manifest references (both make the blob's "last written or retained" time now: the file's mtime,
 * or the bucket's retained/ marker), so anything uploaded or referenced after the run started is
 * newer than the cutoff and kept; `BlobStore.remove` re-checks atomically against a retain racing
 * the sweep (a rename on disk, a handshake in the bucket). Upload sessions are not blobs: one in
 * progress is untouched, only sessions idle for UPLOAD_MAX_AGE are purged. `graceMs` moves the
 * cutoff back, sparing blobs pushed shortly before whose manifest is not in yet.
 */
import type { Logger } from '../log.js'
import { parseManifest } from './manifest-validation.js'
import type { RegistryBackend, RegistryStorage } from './storage/stores.js'
import type { Digest } from '../oci/digest.js'

export interface GcOptions {
  /** The hosted storage (REGISTRY_STORAGE_DIR or the bucket), opened by the caller. */
  storage: RegistryBackend
  /** UPLOAD_MAX_AGE: sessions untouched this long are purged after the sweep. */
  uploadMaxAgeMs: number
  log: Logger
  /** Report what would be removed; change nothing. */
  dryRun: boolean
  /** Also delete manifests no tag reaches (directly, through an index, or as a referrer). */
  deleteUntagged: boolean
  out: (line: string) => void
  /** Keep unreferenced blobs and untagged manifests written less than this long before the run (default 0). */
  graceMs?: number
  /** Runs between mark and sweep: lets a test land a push exactly while gc is deciding. */
  afterMark?: () => Promise<void>
}

interface ManifestLinks {
  /** The revision itself, as the store listed it (what `delete` takes). */
  digest: Digest
  blobs: string[]
  children: string[]
  subject?: string
}

async function linksOf (storage: RegistryStorage, name: string, digest: Digest): Promise<ManifestLinks> {
  const m = await storage.manifests.get(name, digest)
  if (m === undefined) return { digest, blobs: [], children: [] }
  try {
    const parsed = parseManifest(m.body, m.descriptor.mediaType)
    return { digest, blobs: parsed.blobs.map(d => d.digest), children: parsed.manifests.map(d => d.digest), subject: parsed.subject?.digest }
  } catch {
    return { digest, blobs: [], children: [], subject: m.subject }
  }
}

/** Manifests of `name` that survive: all of them, or with deleteUntagged those a tag reaches (or recent ones). */
async function survivors (storage: RegistryStorage, name: string, revisions: Map<string, ManifestLinks>, recent: Set<string>, deleteUntagged: boolean): Promise<Set<string>> {
  if (!deleteUntagged) return new Set(revisions.keys())
  const reachable = new Set<string>(recent)
  for (const tag of await storage.tags.list(name) ?? []) {
    const d = await storage.tags.resolve(name, tag)
    if (d !== undefined) reachable.add(d.value)
  }
  for (let grew = true; grew;) {
    grew = false
    for (const [digest, links] of revisions) {
      const viaParent = reachable.has(digest) ? links.children.filter(c => !reachable.has(c)) : []
      for (const c of viaParent) { reachable.add(c); grew = true }
      // A signature or SBOM (referrer) lives as long as what it refers to.
      if (!reachable.has(digest) && links.subject !== undefined && reachable.has(links.subject)) { reachable.add(digest); grew = true }
    }
  }
  return reachable
}

export async function runGc (opts: GcOptions): Promise<{ removed: number, bytes: number }> {
  const log = opts.log.child({ module: 'gc' })
  const { storage } = opts
  const cutoff = Date.now() - (opts.graceMs ?? 0)
  const verb = opts.dryRun ? 'would remove' : 'removed'

  const marked = new Set<string>()
  for (const name of await storage.manifests.repositories()) {
    const revisions = new Map<string, ManifestLinks>()
    const recent = new Set<string>()
    for (const r of await storage.manifests.list(name)) {
      revisions.set(r.digest.value, await linksOf(storage, name, r.digest))
      if (r.modifiedAt >= cutoff) recent.add(r.digest.value)
    }
    const keep = await survivors(storage, name, revisions, recent, opts.deleteUntagged)
    for (const [digest, links] of revisions) {
      if (!keep.has(digest)) {
        if (!opts.dryRun) await storage.manifests.delete(name, links.digest)
        opts.out(`${verb} untagged manifest ${name}@${digest}`)
        continue
      }
      marked.add(digest)
      for (const b of links.blobs) marked.add(b)
    }
  }

  await opts.afterMark?.()
  let removed = 0
  let bytes = 0
  let young = 0
  for await (const blob of storage.blobs.list()) {
    if (marked.has(blob.digest.value)) continue
    if (blob.modifiedAt >= cutoff) { young++; continue }
    if (opts.dryRun || await storage.blobs.remove(blob.digest, cutoff)) {
      removed++
      bytes += blob.size
      opts.out(`${verb} blob ${blob.digest.value} (${blob.size} bytes)`)
    }
  }
  if (!opts.dryRun) {
    const purged = await storage.purge(Date.now() - opts.uploadMaxAgeMs)
    if (purged.uploads > 0) opts.out(`purged ${purged.uploads} stale upload session(s)`)
  }
  if (young > 0) opts.out(`kept ${young} unreferenced blob(s) written or used since the cutoff`)
  opts.out(`${opts.dryRun ? 'dry run: would remove' : 'removed'} ${removed} blob(s), ${bytes} bytes ${opts.dryRun ? 'reclaimable' : 'reclaimed'}`)
  log.info({ removed, bytes, dryRun: opts.dryRun, marked: marked.size }, 'gc done')
  return { removed, bytes }
}
