// TrafficStats alone, on a fake clock: the since-start totals, the one-hour ring dropping old
// minutes, registries bounded, and the repository ranking staying within its bound.
import t from 'tap'
import { TrafficStats } from '../../../src/observability/traffic-stats.js'
import type { RequestLogLine } from '../../../src/observability/request-log.js'

const line = (host: string, cacheStatus: string, bytes: number, repository?: string): RequestLogLine =>
  ({ door: 'proxy', host, method: 'GET', path: '/v2/x/blobs/sha256:1', status: 200, bytes, ms: 1, cacheStatus, repository })

t.test('hits, misses and bytes per registry, since start and over the last hour', async t => {
  let now = 10 * 60 * 60_000
  const s = new TrafficStats({ registries: ['registry-1.docker.io', 'ghcr.io'], now: () => now })
  s.record(line('registry-1.docker.io', 'MISS', 100))
  s.record(line('registry-1.docker.io', 'HIT', 100))
  s.record(line('registry-1.docker.io', 'JOINED', 100))
  s.record(line('ghcr.io', 'BYPASS', 50))
  s.record(line('elsewhere.test', 'STALE', 7))
  s.record(line('ghcr.io', 'TUNNEL', 999))
  s.record({ ...line('ghcr.io', 'HIT', 1), cacheStatus: undefined })
  const all = s.sinceStart()
  t.same(all.total, { hits: 3, misses: 2, bytesFromCache: 207, bytesFromUpstream: 150, hitRatio: 0.6 })
  t.same(Object.keys(all.byRegistry), ['ghcr.io', 'other', 'registry-1.docker.io'], 'unknown hosts are "other"')
  t.equal(all.byRegistry['registry-1.docker.io'].hitRatio, 2 / 3)
  t.same(s.lastHour().total, all.total, 'all within the hour')
  now += 30 * 60_000
  s.record(line('ghcr.io', 'HIT', 10))
  now += 31 * 60_000
  t.same(s.lastHour().total, { hits: 1, misses: 0, bytesFromCache: 10, bytesFromUpstream: 0, hitRatio: 1 }, 'minutes older than an hour dropped')
  t.equal(s.sinceStart().total.hits, 4, 'still counted since start')
  now += 120 * 60_000
  t.same(s.lastHour().total.hitRatio, null, 'no traffic: no ratio, not 0')
})

t.test('upstream hosts: errors and the last rate limit seen', async t => {
  const s = new TrafficStats({ registries: [] })
  s.upstream({ host: 'Registry-1.docker.io', status: 200, ms: 1, headers: { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '9;w=21600' } })
  s.upstream({ host: 'registry-1.docker.io', status: 429, ms: 1, headers: {} })
  s.upstream({ host: 'ghcr.io', status: 0, ms: 1, headers: {} })
  s.upstream({ host: 'ghcr.io', status: 404, ms: 1, headers: {} })
  t.same(s.upstreamHosts(), [
    { host: 'ghcr.io', requests: 2, errors: 1 },
    { host: 'registry-1.docker.io', requests: 2, errors: 1, rateLimitRemaining: 9, rateLimitLimit: 100 },
  ])
})

t.test('the repository ranking keeps at most maxRepositories names, and a popular newcomer climbs in', async t => {
  const s = new TrafficStats({ registries: ['ghcr.io'], maxRepositories: 3 })
  for (let i = 0; i < 5; i++) s.record(line('ghcr.io', 'HIT', 1, 'a/popular'))
  for (let i = 0; i < 200; i++) s.record(line('ghcr.io', 'MISS', 1, `scan/${i}`))
  for (let i = 0; i < 50; i++) s.record(line('ghcr.io', 'HIT', 1, 'late/star'))
  const top = s.topRepositories(10)
  t.equal(top.length, 3, 'bounded')
  t.equal(top[0].name, 'ghcr.io/late/star', 'the most requested is first')
  t.ok(top[0].requests >= 50, 'space-saving never under-counts')
  t.same(s.topRepositories(1).map(r => r.name), ['ghcr.io/late/star'])
})
