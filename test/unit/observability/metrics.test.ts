// createMetrics without an app: what each feed does to the exposition, label hygiene, and that two
// instances (two apps in one test process) never share a series.
import t from 'tap'
import { createMetrics, requestKind } from '../../../src/observability/metrics.js'

const D = `sha256:${'a'.repeat(64)}`

function value (text: string, series: string): number | undefined {
  const line = text.split('\n').find(l => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.split(' ').pop())
}

t.test('requestKind reads the path only, whatever prefix a door mounts', async t => {
  t.equal(requestKind(`/v2/library/alpine/blobs/${D}`), 'blob')
  t.equal(requestKind(`/v2/docker.io/library/alpine/blobs/${D}?ns=x`), 'blob')
  t.equal(requestKind(`/v2/library/alpine/manifests/${D}`), 'manifest')
  t.equal(requestKind('/v2/library/alpine/manifests/sha256%3Aabc'), 'manifest')
  t.equal(requestKind('/v2/library/alpine/manifests/3.20'), 'tag')
  t.equal(requestKind('/v2/team/app/blobs/uploads/'), 'upload')
  t.equal(requestKind('/v2/team/app/blobs/uploads/0d7e-uuid?_state=x'), 'upload')
  t.equal(requestKind('/v2/'), 'other')
  t.equal(requestKind('/metrics'), 'other')
  t.equal(requestKind(undefined), 'other')
})

t.test('feeds: requests, cache outcomes and bytes, upstream answers and failures, hosted', async t => {
  const m = createMetrics({ processMetrics: false })
  m.observeRequest({ door: 'proxy', method: 'GET', path: `/v2/a/blobs/${D}`, status: 200, bytes: 10, ms: 1, cacheStatus: 'MISS' })
  m.observeRequest({ door: 'proxy', method: 'GET', path: `/v2/a/blobs/${D}`, status: 200, bytes: 10, ms: 1, cacheStatus: 'JOINED' })
  m.observeRequest({ door: 'registry', method: 'GET', path: '/v2/docker.io/a/manifests/1', status: 200, bytes: 5, ms: 1, cacheStatus: 'STALE' })
  m.observeRequest({ door: 'director', method: 'GET', path: '/ca.crt', status: 200, bytes: 900, ms: 1 })
  m.observeRequest({ door: 'proxy', method: 'CONNECT', path: 'x:443', status: 200, bytes: 0, ms: 1, cacheStatus: 'TUNNEL' })
  m.observeUpstream({ host: 'Registry-1.Docker.IO', status: 200, ms: 120, headers: { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '0;w=21600' } })
  m.observeUpstream({ host: 'ghcr.io', status: 0, ms: 60_000, headers: {} })
  m.observeHosted({ method: 'PUT', path: '/v2/team/app/manifests/v1', status: 201 })
  m.observeHosted({ method: 'PUT', path: '/v2/team/app/manifests/v2', status: 400 })
  m.observeHosted({ method: 'GET', path: `/v2/team/app/manifests/${D}`, status: 200 })
  m.observeHosted({ method: 'HEAD', path: '/v2/team/app/manifests/v1', status: 200 })
  m.observeHosted({ method: 'GET', path: `/v2/team/app/blobs/${D}`, status: 200 })
  const { body } = await m.render()
  t.equal(value(body, 'crossdock_requests_total{door="proxy",kind="blob",status="200"}'), 2)
  t.equal(value(body, 'crossdock_requests_total{door="director",kind="other",status="200"}'), 1)
  t.equal(value(body, 'crossdock_cache_requests_total{registry="other",kind="blob",cache_status="MISS"}'), 1)
  t.equal(value(body, 'crossdock_cache_requests_total{registry="other",kind="tag",cache_status="STALE"}'), 1)
  t.notMatch(body, /cache_status="TUNNEL"/, 'tunnels are not cache outcomes')
  t.equal(value(body, 'crossdock_pull_through_bytes_total{registry="other",kind="blob",source="upstream"}'), 10, 'MISS: fetched')
  t.equal(value(body, 'crossdock_pull_through_bytes_total{registry="other",kind="blob",source="cache"}'), 10, 'JOINED: from the cache file')
  t.equal(value(body, 'crossdock_upstream_requests_total{host="registry-1.docker.io",status="200"}'), 1, 'host lower-cased')
  t.equal(value(body, 'crossdock_upstream_requests_total{host="ghcr.io",status="error"}'), 1, 'no response: status "error"')
  t.equal(value(body, 'crossdock_upstream_duration_seconds_bucket{le="0.25",host="registry-1.docker.io",status="200"}'), 1)
  t.equal(value(body, 'crossdock_upstream_ratelimit_limit{host="registry-1.docker.io"}'), 100)
  t.equal(value(body, 'crossdock_upstream_ratelimit_remaining{host="registry-1.docker.io"}'), 0, 'zero left is a value, not absence')
  t.equal(value(body, 'crossdock_hosted_pushes_total'), 1, 'only a 201 manifest PUT')
  t.equal(value(body, 'crossdock_hosted_pulls_total'), 1, 'only a 200 manifest GET')
})

t.test('scrape-time sources, and hosted storage walked again only after a hosted write', async t => {
  const m = createMetrics({ processMetrics: false })
  let walks = 0
  let bytes = 100
  const stats = { entries: 3, usedBytes: 4096, maxSize: 1 << 20, inflight: 1, evictions: 2, expirations: 5 }
  m.collectFrom({ cache: { stats: () => stats }, minter: { minted: 7 }, hostedStorageBytes: async () => { walks++; return bytes } })
  let body = (await m.render()).body
  t.equal(value(body, 'crossdock_cache_size_bytes'), 4096)
  t.equal(value(body, 'crossdock_cache_entries'), 3)
  t.equal(value(body, 'crossdock_cache_fills_in_flight'), 1)
  t.equal(value(body, 'crossdock_cache_evictions_total{reason="size"}'), 2)
  t.equal(value(body, 'crossdock_cache_evictions_total{reason="inactive"}'), 5)
  t.equal(value(body, 'crossdock_certificates_minted_total'), 7)
  t.equal(value(body, 'crossdock_hosted_storage_bytes'), 100)
  stats.evictions = 3
  bytes = 300
  body = (await m.render()).body
  t.equal(value(body, 'crossdock_cache_evictions_total{reason="size"}'), 3, 'the store\'s total, not a sum of scrapes')
  t.equal(value(body, 'crossdock_hosted_storage_bytes'), 100, 'not walked again')
  m.observeHosted({ method: 'PUT', path: `/v2/t/blobs/uploads/x?digest=${D}`, status: 201 })
  body = (await m.render()).body
  t.equal(value(body, 'crossdock_hosted_storage_bytes'), 300, 'a push makes it stale')
  t.equal(walks, 2)
})

t.test('two instances share nothing (several apps in one test process)', async t => {
  const a = createMetrics()
  const b = createMetrics()
  a.observeUpstream({ host: 'x', status: 200, ms: 1, headers: {} })
  t.match((await a.render()).body, /crossdock_upstream_requests_total\{host="x",status="200"\} 1/)
  t.notMatch((await b.render()).body, /host="x"/)
  t.match((await b.render()).body, /\nprocess_resident_memory_bytes \d+/, 'process metrics in each, under their standard names')
})

t.test('build info, request duration and in-flight by door, registry label bounded to configured registries', async t => {
  const m = createMetrics({ processMetrics: false, registries: ['registry-1.docker.io', 'ghcr.io'], version: '9.8.7' })
  m.observeRequest.started?.({ door: 'registry' })
  m.observeRequest.started?.({ door: 'registry' })
  m.observeRequest.started?.({ door: 'proxy' })
  let body = (await m.render()).body
  t.equal(value(body, `crossdock_build_info{version="9.8.7",node="${process.version}"}`), 1)
  t.equal(value(body, 'crossdock_http_requests_in_flight{door="registry"}'), 2)
  t.equal(value(body, 'crossdock_http_requests_in_flight{door="director"}'), 0, 'every door has a series from the start')
  m.observeRequest({ door: 'registry', host: 'GHCR.io', method: 'GET', path: `/v2/ghcr.io/a/blobs/${D}`, status: 200, bytes: 7, ms: 30, cacheStatus: 'HIT' })
  m.observeRequest({ door: 'registry', host: 'evil.example', method: 'BREW', path: `/v2/x/manifests/${D}`, status: 200, bytes: 3, ms: 2000, cacheStatus: 'MISS' })
  m.observeRequest({ door: 'proxy', host: 'registry-1.docker.io', method: 'GET', path: '/v2/a/manifests/1', status: 200, bytes: 5, ms: 1, cacheStatus: 'MISS' })
  body = (await m.render()).body
  t.equal(value(body, 'crossdock_http_requests_in_flight{door="registry"}'), 0, 'both finished')
  t.equal(value(body, 'crossdock_http_requests_in_flight{door="proxy"}'), 0)
  t.equal(value(body, 'crossdock_cache_requests_total{registry="ghcr.io",kind="blob",cache_status="HIT"}'), 1, 'host lower-cased')
  t.equal(value(body, 'crossdock_cache_requests_total{registry="other",kind="manifest",cache_status="MISS"}'), 1, 'an unconfigured host is "other"')
  t.equal(value(body, 'crossdock_pull_through_bytes_total{registry="registry-1.docker.io",kind="tag",source="upstream"}'), 5)
  t.notMatch(body, /evil\.example|BREW/, 'no unbounded label value')
  t.equal(value(body, 'crossdock_http_request_duration_seconds_bucket{le="0.05",door="registry",method="GET",kind="blob"}'), 1, '30 ms')
  t.equal(value(body, 'crossdock_http_request_duration_seconds_bucket{le="1",door="registry",method="other",kind="manifest"}'), 0, '2 s is above 1 s')
  t.equal(value(body, 'crossdock_http_request_duration_seconds_count{door="registry",method="other",kind="manifest"}'), 1)
})

t.test('tunnels: outcomes, bytes by direction, open gauge', async t => {
  const m = createMetrics({ processMetrics: false })
  let body = (await m.render()).body
  t.equal(value(body, 'crossdock_tunnels_total{outcome="failed"}'), 0, 'zero series before the first tunnel')
  m.tunnels.opened()
  m.tunnels.opened()
  m.tunnels.bytes('up', 100)
  m.tunnels.bytes('down', 5000)
  m.tunnels.closed()
  m.tunnels.failed('timeout')
  body = (await m.render()).body
  t.equal(value(body, 'crossdock_tunnels_total{outcome="opened"}'), 2)
  t.equal(value(body, 'crossdock_tunnels_total{outcome="timeout"}'), 1)
  t.equal(value(body, 'crossdock_tunnels_open'), 1)
  t.equal(value(body, 'crossdock_tunnel_bytes_total{direction="up"}'), 100)
  t.equal(value(body, 'crossdock_tunnel_bytes_total{direction="down"}'), 5000)
})

t.test('readiness and failed fills read at scrape time', async t => {
  const m = createMetrics({ processMetrics: false })
  let ready = true
  m.collectFrom({ ready: async () => ready, cache: { stats: () => ({ entries: 0, usedBytes: 0, maxSize: 1, inflight: 0, evictions: 0, expirations: 0, fillsFailed: 4 }) } })
  t.equal(value((await m.render()).body, 'crossdock_ready'), 1)
  ready = false
  const body = (await m.render()).body
  t.equal(value(body, 'crossdock_ready'), 0)
  t.equal(value(body, 'crossdock_cache_fills_failed_total'), 4)
})
