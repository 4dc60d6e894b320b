// /metrics, /healthz and /readyz on both doors of the real app: counters move with real proxied
// pulls against the fake upstream, gauges read the cache at scrape time, and nothing that names a
// repository, a path or a credential becomes a label.
import t from 'tap'
import { rm, writeFile } from 'node:fs/promises'
import { startApp, type StartedApp } from '../../helpers/start-app.js'
import { FakeUpstream } from '../../helpers/fake-upstream.js'
import { proxiedRequest, sha256 } from '../../helpers/proxy-client.js'
import { sample } from '../../helpers/metrics-text.js'

const HUB = 'registry-1.docker.io'

async function get (port: number, path: string): Promise<{ status: number, type: string, body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`)
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() }
}

let upstream: FakeUpstream
let app: StartedApp
t.before(async () => {
  upstream = new FakeUpstream()
  await upstream.start()
  app = await startApp({ UPSTREAM_CONNECT_TO: upstream.connectTo([HUB]), CACHE_MIN_FREE: '0' })
})
t.teardown(async () => { await app?.stop(); await upstream?.stop() })

t.test('a cached pull moves the request, cache, bytes and upstream counters', async t => {
  const layer = Buffer.alloc(200_000, 7)
  const digest = upstream.addBlob(layer)
  upstream.fault = (req, res) => {
    // Docker Hub's rate-limit headers on what the fake upstream answers.
    res.setHeader('ratelimit-limit', '100;w=21600')
    res.setHeader('ratelimit-remaining', '76;w=21600')
    return false
  }
  const pull = async (): Promise<void> => {
    const r = await proxiedRequest({ proxyPort: app.proxyPort, host: HUB, ca: app.caPem, path: `/v2/library/secret-name/blobs/${digest}`, headers: { authorization: 'Bearer sekrit-token' } })
    t.equal(r.status, 200)
    t.equal(sha256(r.body), digest, 'whole body')
  }
  await pull()
  await pull()
  const m = await get(app.proxyPort, '/metrics')
  t.equal(m.status, 200)
  t.match(m.type, /^text\/plain; version=0\.0\.4/, 'Prometheus text format')
  t.equal(sample(m.body, 'crossdock_cache_requests_total', { kind: 'blob', cache_status: 'MISS' }), 1, 'one miss')
  t.equal(sample(m.body, 'crossdock_cache_requests_total', { kind: 'blob', cache_status: 'HIT' }), 1, 'one hit')
  t.equal(sample(m.body, 'crossdock_pull_through_bytes_total', { kind: 'blob', source: 'cache' }), layer.length, 'hit bytes from the cache')
  t.equal(sample(m.body, 'crossdock_pull_through_bytes_total', { kind: 'blob', source: 'upstream' }), layer.length, 'miss bytes from upstream')
  t.equal(sample(m.body, 'crossdock_requests_total', { door: 'proxy', kind: 'blob', status: '200' }), 2)
  t.equal(sample(m.body, 'crossdock_upstream_requests_total', { host: HUB, status: '200' }), 1, 'one upstream GET')
  t.equal(sample(m.body, 'crossdock_upstream_duration_seconds_count', { host: HUB, status: '200' }), 1, 'latency observed')
  t.equal(sample(m.body, 'crossdock_upstream_ratelimit_limit', { host: HUB }), 100)
  t.equal(sample(m.body, 'crossdock_upstream_ratelimit_remaining', { host: HUB }), 76)
  t.equal(sample(m.body, 'crossdock_cache_entries'), 1, 'scrape-time gauge from cache.stats()')
  t.equal(sample(m.body, 'crossdock_cache_size_bytes'), layer.length)
  t.equal(sample(m.body, 'crossdock_certificates_minted_total'), 1, 'one leaf for the one intercepted host')
  t.equal(sample(m.body, 'crossdock_cache_evictions_total', { reason: 'size' }), 0)
  t.ok((sample(m.body, 'process_resident_memory_bytes') ?? 0) > 0, 'process metrics under their standard names')
  t.ok(sample(m.body, 'nodejs_heap_size_used_bytes') !== undefined, 'nodejs_* too')
  t.equal(sample(m.body, 'crossdock_process_resident_memory_bytes'), undefined, 'no crossdock_ prefix on them')
  t.notMatch(m.body, /secret-name|sekrit|\/v2\//, 'no repository, path or token in any label')
  upstream.fault = undefined
})

t.test('the registry door serves the same registry, and counts hosted pushes and pulls', async t => {
  const base = `http://127.0.0.1:${app.registryPort}`
  const config = Buffer.from('{}')
  const cd = sha256(config)
  const up = await fetch(`${base}/v2/team/app/blobs/uploads/?digest=${cd}`, { method: 'POST', body: config, headers: { 'content-type': 'application/octet-stream' } })
  t.equal(up.status, 201, 'monolithic blob upload')
  const manifest = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cd, size: config.length }, layers: [] })
  const put = await fetch(`${base}/v2/team/app/manifests/v1`, { method: 'PUT', body: manifest, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })
  t.equal(put.status, 201, 'manifest pushed')
  const got = await fetch(`${base}/v2/team/app/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
  t.equal(got.status, 200)
  await got.text()
  const m = await get(app.registryPort, '/metrics')
  t.equal(m.status, 200)
  t.equal(sample(m.body, 'crossdock_hosted_pushes_total'), 1)
  t.equal(sample(m.body, 'crossdock_hosted_pulls_total'), 1)
  t.equal(sample(m.body, 'crossdock_requests_total', { door: 'registry', kind: 'tag', status: '201' }), 1, 'the PUT by tag')
  t.equal(sample(m.body, 'crossdock_requests_total', { door: 'registry', kind: 'upload', status: '201' }), 1, 'the upload')
  t.ok((sample(m.body, 'crossdock_hosted_storage_bytes') ?? 0) >= config.length, 'hosted storage size')
  t.equal(sample(m.body, 'crossdock_cache_requests_total', { kind: 'blob', cache_status: 'HIT' }), 1, 'same registry as the proxy door')
})

t.test('/healthz and /readyz on both doors', async t => {
  for (const port of [app.proxyPort, app.registryPort]) {
    const h = await get(port, '/healthz')
    t.same([h.status, JSON.parse(h.body)], [200, { status: 'ok' }])
    const r = await get(port, '/readyz')
    t.equal(r.status, 200, r.body)
    t.equal(JSON.parse(r.body).status, 'ready')
  }
})

t.test('/readyz is 503 with a reason when a directory takes no write, or the disk is below CACHE_MIN_FREE', async t => {
  const low = await startApp({ CACHE_MIN_FREE: '4000t' })
  t.teardown(low.stop)
  const r = await get(low.proxyPort, '/readyz')
  t.equal(r.status, 503)
  t.match(JSON.parse(r.body), { status: 'not ready', reason: /below CACHE_MIN_FREE/ })
  t.equal((await get(low.proxyPort, '/healthz')).status, 200, 'still alive')

  const broken = await startApp({ CACHE_MIN_FREE: '0' })
  t.teardown(broken.stop)
  // Root ignores permission bits, so make the directory impossible to write into: a file in its place.
  await rm(broken.config.registryStorageDir, { recursive: true, force: true })
  await writeFile(broken.config.registryStorageDir, 'not a directory')
  const b = await get(broken.registryPort, '/readyz')
  t.equal(b.status, 503)
  t.match(JSON.parse(b.body), { reason: /registry directory .* is not writable/, checks: { cacheDir: 'ok', ca: 'ok' } })
})
