/**
 * Tag records are keyed by what can change the answer of a tag resolution: the upstream host, the
 * repository, the tag and the media types the client accepts (a client that only accepts schema2
 * gets a different manifest than one that accepts OCI indexes). Never by path alone: the same path
 * on two upstreams (or through two doors) is two different tags.
 *
 * Also here: the ENABLE_MANIFEST_CACHE tiers (rpardini's nginx.manifest.*.conf), i.e. how long a tag
 * record may answer without asking the upstream.
 */
import type { Config } from '../config/index.js'

export interface TagRef {
  /** Upstream host (`registry-1.docker.io`, `ghcr.io`, `host:port`). */
  host: string
  repository: string
  tag: string
  /** The client's Accept header(s), as received. */
  accept?: string | string[]
}

/** A tag resolution remembered: which manifest the tag pointed to, and when the upstream said so. */
export interface TagRecord {
  digest: string
  mediaType: string
  size: number
  /** Milliseconds since the epoch of the last upstream answer about this tag. */
  fetchedAt: number
}

/**
 * The Accept value in one canonical spelling: media ranges lower-cased, whitespace dropped,
 * duplicates removed, sorted (clients send the same set in different orders and as one header or
 * several).
 */
export function normalizeAccept (accept: string | string[] | undefined): string {
  if (accept === undefined) return ''
  const parts = (Array.isArray(accept) ? accept : [accept])
    .flatMap(a => a.split(','))
    .map(a => a.replace(/\s+/g, '').toLowerCase())
    .filter(a => a !== '')
  return [...new Set(parts)].sort().join(',')
}

export function tagKey (ref: TagRef): string {
  return `tag:${ref.host.toLowerCase()}/${ref.repository}:${ref.tag}#${normalizeAccept(ref.accept)}`
}

export type ManifestTier = 'primary' | 'secondary' | 'default' | 'disabled'

/**
 * rpardini's tiers: with ENABLE_MANIFEST_CACHE, `…/manifests/<PRIMARY_REGEX>` (10m), then
 * `<SECONDARY_REGEX>` (60d), then everything else (1h); without it every tag is revalidated (0s).
 * nginx matched `^/v2/(.*)/manifests/<REGEX>` with no end anchor, so the regex is anchored at the
 * start of the tag only: `stable-2024` is primary, `my-stable` is not.
 */
export function manifestTier (cache: Config['cache'], tag: string): { tier: ManifestTier, ttlMs: number } {
  if (!cache.enableManifestCache) return { tier: 'disabled', ttlMs: 0 }
  if (cache.primaryRegex !== undefined && anchored(cache.primaryRegex).test(tag)) return { tier: 'primary', ttlMs: cache.primaryTtlMs }
  if (cache.secondaryRegex !== undefined && anchored(cache.secondaryRegex).test(tag)) return { tier: 'secondary', ttlMs: cache.secondaryTtlMs }
  return { tier: 'default', ttlMs: cache.defaultTtlMs }
}

const anchoredCache = new WeakMap<RegExp, RegExp>()

function anchored (re: RegExp): RegExp {
  let a = anchoredCache.get(re)
  if (a === undefined) {
    a = new RegExp(`^(?:${re.source})`, re.flags.replace(/[gy]/g, ''))
    anchoredCache.set(re, a)
  }
  return a
}
