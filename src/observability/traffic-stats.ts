/**
 * What the status page shows of the traffic, in memory and bounded: cache hits and misses with the
 * bytes they served, overall and per registry, since start and over the last hour; upstream answers
 * and Docker Hub rate limits per host; the most requested repositories.
 *
 *   request-log line ──record(line)──► totals since start   (per registry)
 *                                      ├─► ring of 60 one-minute buckets (per registry): last hour
 *                                      └─► repository counts (space-saving, at most `maxRepositories`)
 *   upstream answer ──upstream(r)────► per host: requests, errors, rate limit
 *
 * Prometheus keeps the long history; this is only what one page needs without a Prometheus. The
 * registry keys are bounded like the metrics' label (configured registries, else "other"); the
 * upstream hosts are the metrics' host label values, bounded the same way.
 */
import type { RequestLogLine } from './request-log.js'
import { rateLimitValue, type UpstreamObservation } from './metrics.js'

export interface Traffic {
  /** HIT, JOINED, STALE: served without an upstream transfer of their own. */
  hits: number
  /** MISS, BYPASS. */
  misses: number
  bytesFromCache: number
  bytesFromUpstream: number
}

export interface TrafficView {
  total: Traffic & { hitRatio: number | null }
  byRegistry: Record<string, Traffic & { hitRatio: number | null }>
}

export interface UpstreamHostStats {
  host: string
  requests: number
  /** No response, or a 5xx or 429 answer. */
  errors: number
  rateLimitRemaining?: number
  rateLimitLimit?: number
}

const FROM_CACHE = new Set(['HIT', 'JOINED', 'STALE'])
const FROM_UPSTREAM = new Set(['MISS', 'BYPASS'])
const MINUTE = 60_000
const BUCKETS = 60

export class TrafficStats {
  private readonly registries: Set<string>
  private readonly total = new Map<string, Traffic>()
  /** Slot `m % 60` holds minute `m` (epoch minutes) once written; stale slots are skipped by minute. */
  private readonly ring: Array<{ minute: number, byRegistry: Map<string, Traffic> } | undefined> = new Array(BUCKETS)
  private readonly repositories = new Map<string, number>()
  private readonly upstreams = new Map<string, UpstreamHostStats>()

  constructor (private readonly opts: { registries: readonly string[], maxRepositories?: number, now?: () => number }) {
    this.registries = new Set(opts.registries.map(h => h.toLowerCase()))
  }

  private get now (): number { return (this.opts.now ?? Date.now)() }

  record (line: RequestLogLine): void {
    const status = line.cacheStatus ?? ''
    const fromCache = FROM_CACHE.has(status)
    if (!fromCache && !FROM_UPSTREAM.has(status)) return
    const host = typeof line.host === 'string' ? line.host.toLowerCase() : ''
    const registry = this.registries.has(host) ? host : 'other'
    const minute = Math.floor(this.now / MINUTE)
    let bucket = this.ring[minute % BUCKETS]
    if (bucket?.minute !== minute) this.ring[minute % BUCKETS] = bucket = { minute, byRegistry: new Map() }
    for (const map of [this.total, bucket.byRegistry]) {
      const t = map.get(registry) ?? { hits: 0, misses: 0, bytesFromCache: 0, bytesFromUpstream: 0 }
      if (fromCache) { t.hits++; t.bytesFromCache += line.bytes } else { t.misses++; t.bytesFromUpstream += line.bytes }
      map.set(registry, t)
    }
    if (typeof line.repository === 'string') this.countRepository(`${registry === 'other' ? host : registry}/${line.repository}`)
  }

  upstream (r: UpstreamObservation): void {
    const host = r.host.toLowerCase()
    const remaining = rateLimitValue(r.headers['ratelimit-remaining'])
    const limit = rateLimitValue(r.headers['ratelimit-limit'])
    const s = this.upstreams.get(host) ?? { host, requests: 0, errors: 0 }
    s.requests++
    if (r.status === 0 || r.status === 429 || r.status >= 500) s.errors++
    if (remaining !== undefined) s.rateLimitRemaining = remaining
    if (limit !== undefined) s.rateLimitLimit = limit
    this.upstreams.set(host, s)
  }

  sinceStart (): TrafficView {
    return view([this.total])
  }

  lastHour (): TrafficView {
    const minute = Math.floor(this.now / MINUTE)
    return view(this.ring.filter(b => b !== undefined && b.minute > minute - BUCKETS).map(b => b!.byRegistry))
  }

  upstreamHosts (): UpstreamHostStats[] {
    return [...this.upstreams.values()].map(s => ({ ...s })).sort((a, b) => a.host.localeCompare(b.host))
  }

  topRepositories (n: number): Array<{ name: string, requests: number }> {
    return [...this.repositories].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, n).map(([name, requests]) => ({ name, requests }))
  }

  /**
   * Space-saving (Metwally et al.): when the map is full, the least counted name makes room and the
   * newcomer inherits its count + 1, so a name requested often enough always climbs back into the
   * top, and memory stays at `maxRepositories` entries however many names clients ask for.
   */
  private countRepository (name: string): void {
    const max = this.opts.maxRepositories ?? 1000
    const n = this.repositories.get(name)
    if (n !== undefined || this.repositories.size < max) { this.repositories.set(name, (n ?? 0) + 1); return }
    let min: [string, number] | undefined
    for (const e of this.repositories) if (min === undefined || e[1] < min[1]) min = e
    this.repositories.delete(min![0])
    this.repositories.set(name, min![1] + 1)
  }
}

function view (maps: Array<Map<string, Traffic>>): TrafficView {
  const total: Traffic = { hits: 0, misses: 0, bytesFromCache: 0, bytesFromUpstream: 0 }
  const byRegistry: Record<string, Traffic> = {}
  for (const map of maps) {
    for (const [registry, t] of map) {
      const r = byRegistry[registry] ??= { hits: 0, misses: 0, bytesFromCache: 0, bytesFromUpstream: 0 }
      for (const k of ['hits', 'misses', 'bytesFromCache', 'bytesFromUpstream'] as const) { r[k] += t[k]; total[k] += t[k] }
    }
  }
  const ratio = (t: Traffic): Traffic & { hitRatio: number | null } => ({ ...t, hitRatio: t.hits + t.misses === 0 ? null : t.hits / (t.hits + t.misses) })
  return { total: ratio(total), byRegistry: Object.fromEntries(Object.entries(byRegistry).sort().map(([k, t]) => [k, ratio(t)])) }
}
