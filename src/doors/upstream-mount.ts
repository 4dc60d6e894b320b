/**
 * The hosted registry's `mountSource` (registry/context.ts): a cross-repository mount whose `from`
 * is an upstream namespace (`?mount=<digest>&from=docker.io/library/alpine`) copies the blob from
 * the pull-through cache, so retagging an upstream image into a hosted name moves no bytes from the
 * upstream. Only blobs already cached are offered: a mount never fetches (the client then uploads,
 * reading the source through the registry door, which caches it). What `from` means is the
 * registry door's grammar (registry-door-path.ts).
 */
import type { Readable } from 'node:stream'
import type { Logger } from '../log.js'
import type { Digest } from '../oci/digest.js'
import type { CacheBlobStore } from '../cache/stores.js'
import type { AccessPolicy } from '../mirror/access-policy.js'
import type { MountSource } from '../registry/context.js'
import { resolveNamespace, UpstreamNames } from './registry-door-path.js'

/** A cached blob offered to a hosted mount; `open` gives a stream the caller owns. */
export interface MountableBlob {
  size: number
  open: () => Promise<Readable | undefined>
}

export interface UpstreamMountOptions {
  /** config.registries: the upstreams a `from` may name. */
  registries: readonly string[]
  cache: Pick<CacheBlobStore, 'stat' | 'open'>
  /**
   * Private images stay private through mounts too: a cached blob is offered only when the
   * registry door's clients may be served it from `from` (the same check a pull through the door
   * makes). Absent: every cached blob may be mounted.
   */
  access?: Pick<AccessPolicy, 'canServe'>
  log: Logger
}

export function createUpstreamMountSource (opts: UpstreamMountOptions): MountSource {
  const log = opts.log.child({ module: 'registry-door' })
  const upstreams = new UpstreamNames(opts.registries)
  return async (from: string, digest: Digest): Promise<MountableBlob | undefined> => {
    const ns = resolveNamespace(from, upstreams)
    if (ns === undefined) return undefined
    // The cache is keyed by digest alone (one copy across upstreams), as pulls through this door are.
    const cached = opts.cache.stat(digest)
    if (cached === undefined) return undefined
    // No client Authorization: on this door it is for crossdock, never for the upstream.
    const decision = await opts.access?.canServe({ host: ns.host, repository: ns.repository, kind: 'blob', reference: digest.value })
    if (decision !== undefined && !decision.allowed) {
      log.info({ host: ns.host, repository: ns.repository, digest: digest.value, reason: decision.reason }, 'registry door: mount from the cache refused by the access policy')
      return undefined
    }
    return {
      size: cached.size,
      // Opened only when the hosted registry really copies (it may already hold the content).
      // Undefined if the entry was evicted meanwhile: the mount then falls back to an upload.
      open: async () => {
        const opened = await opts.cache.open(digest)
        return opened?.fh.createReadStream({ highWaterMark: 1 << 20 })
      },
    }
  }
}
