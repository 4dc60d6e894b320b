/**
 * What a cache prune removes, the same rule for the directory cache (`crossdock cache prune`) and
 * the bucket (the janitor, and the same command with STORAGE=s3): first everything not read for
 * `olderThanMs` (CACHE_INACTIVE), then the least recently read until the rest fits in `maxSize`
 * (CACHE_MAX_SIZE) — the order the directory cache's own eviction takes (lru-bound.ts).
 */
export interface Prunable {
  size: number
  /** Last read, ms since the epoch (the write when never read). */
  lastReadAt: number
}

export interface RemovalPlan<E extends Prunable> {
  /** Not read for longer than olderThanMs. */
  inactive: E[]
  /** Then, least recently read first, until the kept ones fit in maxSize. */
  forSize: E[]
  kept: E[]
}

export function planRemovals<E extends Prunable> (entries: readonly E[], opts: { now: number, olderThanMs?: number, maxSize?: number }): RemovalPlan<E> {
  const byAge = [...entries].sort((a, b) => a.lastReadAt - b.lastReadAt)
  const old = opts.olderThanMs
  const inactive = old === undefined ? [] : byAge.filter(e => opts.now - e.lastReadAt > old)
  let kept = old === undefined ? byAge : byAge.filter(e => opts.now - e.lastReadAt <= old)
  const forSize: E[] = []
  if (opts.maxSize !== undefined) {
    let total = kept.reduce((n, e) => n + e.size, 0)
    let i = 0
    while (total > opts.maxSize && i < kept.length) { total -= kept[i].size; forSize.push(kept[i]); i++ }
    kept = kept.slice(i)
  }
  return { inactive, forSize, kept }
}
