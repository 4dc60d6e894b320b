/**
 * The ENABLE_MANIFEST_CACHE tiers (rpardini's nginx.manifest.*.conf): how long a cached tag record
 * may answer without asking the upstream. A pull-through policy, not a property of the cache: the
 * cache stores tag records with the time the upstream vouched for them, this decides if that is
 * recent enough.
 */
import type { Config } from '../config/index.js'

export type ManifestTier = 'primary' | 'secondary' | 'default' | 'disabled'

/** The config fields the tiers read (config.cache). */
export type ManifestTierConfig = Pick<Config['cache'], 'enableManifestCache' | 'primaryRegex' | 'primaryTtlMs' | 'secondaryRegex' | 'secondaryTtlMs' | 'defaultTtlMs'>

/**
 * rpardini's tiers: with ENABLE_MANIFEST_CACHE, `…/manifests/<PRIMARY_REGEX>` (10m), then
 * `<SECONDARY_REGEX>` (60d), then everything else (1h); without it every tag is revalidated (0s).
 * nginx matched `^/v2/(.*)/manifests/<REGEX>` with no end anchor, so the regex is anchored at the
 * start of the tag only: `stable-2024` is primary, `my-stable` is not.
 */
export function manifestTier (cache: ManifestTierConfig, tag: string): { tier: ManifestTier, ttlMs: number } {
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
