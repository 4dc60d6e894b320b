/**
 * The size bound of the pull-through cache (cacache itself has none): an lru-cache over every
 * cache key, sized in bytes, plus the bytes reserved by downloads still in flight.
 *
 *   used (committed entries, in the LRU) + reserved (in-flight fills) ≤ maxSize   — always
 *
 * - `reserve(n)` before a download evicts least-recently-read entries until n fits beside the
 *   other reservations, or refuses (the caller then streams the blob through uncached). So eight
 *   concurrent misses cannot together overshoot the bound the way "write, then evict" would.
 * - `add` after a commit turns the reservation into an entry.
 * - CACHE_INACTIVE is lru-cache's `ttl` with `updateAgeOnGet`: an entry not read for that long
 *   expires; a timer purges expired entries so they leave the disk, not only the index.
 * - Eviction, expiry and `delete` call `onRemove`, which deletes from disk (cacache-entries.ts).
 *
 * Recency survives a restart through a small JSON file (key → last read, ms since the epoch),
 * rewritten atomically at most every `persistEveryMs` when something was read, and on close.
 * Chosen over re-inserting cacache index entries on every read because a read must not cost a
 * disk write (a hit is served at GB/s), and because appended index lines would grow each bucket
 * without bound. Losing the last few seconds of recency in a crash only reorders eviction a little.
 */
import { readFile, rename, writeFile } from 'node:fs/promises'
import { LRUCache } from 'lru-cache'

export interface BoundEntry {
  /** Bytes this entry holds on disk (tag records count a nominal size). */
  size: number
  /** Milliseconds since the epoch of the last read (or the insert). Kept up to date by `get`. */
  lastReadAt: number
}

export type RemoveReason = 'evict' | 'expire' | 'delete'

export interface LruBoundOptions<V extends BoundEntry> {
  maxSize: number
  /** CACHE_INACTIVE; 0 disables expiry. */
  inactiveMs: number
  onRemove: (key: string, value: V, reason: RemoveReason) => void
  /** Where recency is persisted; omit to keep it in memory only. */
  recencyFile?: string
  persistEveryMs?: number
  /** Clock in ms since the epoch (tests pass a fake one). */
  now?: () => number
}

export interface Reservation {
  readonly bytes: number
  released: boolean
}

export class LruBound<V extends BoundEntry> {
  readonly maxSize: number
  private readonly lru: LRUCache<string, V>
  private readonly now: () => number
  private reservedBytes = 0
  private dirty = false
  private timer: NodeJS.Timeout | undefined
  private readonly opts: LruBoundOptions<V>

  constructor (opts: LruBoundOptions<V>) {
    this.opts = opts
    this.maxSize = opts.maxSize
    this.now = opts.now ?? Date.now
    this.lru = new LRUCache<string, V>({
      maxSize: opts.maxSize,
      sizeCalculation: v => Math.max(1, v.size),
      ttl: opts.inactiveMs,
      updateAgeOnGet: true,
      updateAgeOnHas: false,
      ttlResolution: 0,
      // ttl start times are in the same clock as lastReadAt, so a restart can restore them.
      perf: { now: () => this.now() },
      dispose: (value, key, reason) => {
        if (reason === 'evict' || reason === 'expire' || reason === 'delete') opts.onRemove(key, value, reason)
      },
    })
    const every = opts.persistEveryMs ?? 30_000
    if (opts.recencyFile !== undefined || opts.inactiveMs > 0) {
      this.timer = setInterval(() => { void this.tick() }, Math.min(every, opts.inactiveMs > 0 ? opts.inactiveMs : every))
      this.timer.unref()
    }
  }

  /** Bytes held by committed entries. */
  get usedBytes (): number { return this.lru.calculatedSize }
  /** Bytes promised to in-flight downloads. */
  get reserved (): number { return this.reservedBytes }
  get count (): number { return this.lru.size }

  /** The entry, marking it read (recency and CACHE_INACTIVE); undefined when absent or expired. */
  get (key: string): V | undefined {
    const v = this.lru.get(key)
    if (v !== undefined) { v.lastReadAt = this.now(); this.dirty = true }
    return v
  }

  /** The entry without marking it read. */
  peek (key: string): V | undefined {
    return this.lru.peek(key)
  }

  /**
   * Inserts (or replaces) an entry, evicting least-recently-read entries first so that
   * used + reserved stays ≤ maxSize. `lastReadAt` of the value sets its place in the LRU order
   * only through insertion order: callers restoring from disk insert oldest first.
   * Returns false (and stores nothing) when the entry is larger than the whole cache.
   */
  add (key: string, value: V): boolean {
    const size = Math.max(1, value.size)
    if (size > this.maxSize) return false
    const old = this.lru.peek(key)
    this.makeRoom(size - (old !== undefined ? Math.max(1, old.size) : 0))
    this.lru.set(key, value, { size, start: value.lastReadAt, noDisposeOnSet: true })
    this.dirty = true
    return true
  }

  delete (key: string): boolean {
    return this.lru.delete(key)
  }

  /**
   * Reserves `bytes` for a download, evicting as needed. Undefined when they cannot fit: larger
   * than the cache, or the other in-flight reservations leave no room even with the LRU empty.
   */
  reserve (bytes: number): Reservation | undefined {
    if (bytes > this.maxSize) return undefined
    this.makeRoom(bytes)
    if (this.lru.calculatedSize + this.reservedBytes + bytes > this.maxSize) return undefined
    this.reservedBytes += bytes
    return { bytes, released: false }
  }

  /** Gives a reservation back (idempotent). */
  release (r: Reservation): void {
    if (r.released) return
    r.released = true
    this.reservedBytes -= r.bytes
  }

  /** Keys from least to most recently read. */
  keys (): string[] {
    return [...this.lru.rkeys()]
  }

  /** Drops entries not read for CACHE_INACTIVE (their files go through onRemove). */
  purgeInactive (): void {
    this.lru.purgeStale()
  }

  /** Last read times from the recency file, or an empty map when there is none (or it is unreadable). */
  async loadRecency (): Promise<Map<string, number>> {
    if (this.opts.recencyFile === undefined) return new Map()
    try {
      const parsed = JSON.parse(await readFile(this.opts.recencyFile, 'utf8')) as { v?: number, entries?: Record<string, number> }
      return new Map(Object.entries(parsed.entries ?? {}).filter(([, t]) => typeof t === 'number'))
    } catch {
      return new Map()
    }
  }

  /** Writes the recency file now if anything changed (tmp + rename: a crash leaves the old one). */
  async persist (): Promise<void> {
    if (this.opts.recencyFile === undefined || !this.dirty) return
    this.dirty = false
    const entries: Record<string, number> = {}
    for (const [k, v] of this.lru.entries()) entries[k] = v.lastReadAt
    const tmp = `${this.opts.recencyFile}.${process.pid}.tmp`
    try {
      await writeFile(tmp, JSON.stringify({ v: 1, entries }))
      await rename(tmp, this.opts.recencyFile)
    } catch {
      this.dirty = true
    }
  }

  async close (): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    await this.persist()
  }

  private async tick (): Promise<void> {
    if (this.opts.inactiveMs > 0) this.purgeInactive()
    await this.persist()
  }

  private makeRoom (bytes: number): void {
    while (this.lru.size > 0 && this.lru.calculatedSize + this.reservedBytes + bytes > this.maxSize) {
      this.lru.pop()
    }
  }
}
