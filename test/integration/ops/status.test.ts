// The status page's routes and /status.json on both doors of the real app: the numbers agree with
// /metrics after real pulls (a miss and hits, through both doors), a fill in flight shows its bytes
// and clients, tunnels are counted, and repository names stay hidden from clients that do not pass
// client auth when HTPASSWD_FILE is set.
import t from 'tap'
import net from 'node:net'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import bcrypt from 'bcryptjs'
import { startApp, type StartedApp } from '../../helpers/start-app.js'
import { FakeUpstream } from '../../helpers/fake-upstream.js'
import { connectThrough, proxiedRequest, sha256 } from '../../helpers/proxy-client.js'
import { waitFor } from '../../helpers/e2e/index.js'
import { sample } from '../../helpers/metrics-text.js'
import type { StatusReport } from '../../../src/observability/status.js'

const HUB = 'registry-1.docker.io'

async function get (port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number, headers: Headers, body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers })
  return { status: res.status, headers: res.headers, body: await res.text() }
}
/** A request's line (which feeds the counters) is written when its response closes, just after the client has read it all. */
const counted = async (port: number, n: number): Promise<StatusReport> => await waitFor(`${n} pull-through requests counted`, async () => {
  const s = await status(port)
  return s.traffic.sinceStart.total.hits + s.traffic.sinceStart.total.misses === n ? s : undefined
}, { timeoutMs: 5_000 })
const status = async (port: number, headers: Record<string, string> = {}): Promise<StatusReport> => JSON.parse((await get(port, '/status.json', headers)).body)

let upstream: FakeUpstream
let far: net.Server
let app: StartedApp
t.before(async () => {
  upstream = new FakeUpstream()
  await upstream.start()
  far = net.createServer(s => s.pipe(s)) // an echo server behind a raw tunnel
  await new Promise<void>(resolve => far.listen(0, '127.0.0.1', resolve))
  const dead = net.createServer()
  await new Promise<void>(resolve => dead.listen(0, '127.0.0.1', resolve))
  const deadPort = (dead.address() as net.AddressInfo).port
  await new Promise<void>(resolve => dead.close(() => resolve()))
  app = await startApp({
    UPSTREAM_CONNECT_TO: `${upstream.connectTo([HUB])},tunnel.test:443:127.0.0.1:${(far.address() as net.AddressInfo).port},dead.test:443:127.0.0.1:${deadPort}`,
    CACHE_MIN_FREE: '0',
    CACHE_MAX_SIZE: '10m',
  })
})
t.teardown(async () => { await app?.stop(); await upstream?.stop(); far?.close() })

t.test('/ is plain text for curl and the page for browsers, on both doors', async t => {
  for (const port of [app.proxyPort, app.registryPort]) {
    const plain = await get(port, '/')
    t.equal(plain.status, 200)
    t.match(plain.headers.get('content-type'), /^text\/plain/)
    t.match(plain.body, /^crossdock \d+\.\d+\.\d+\S*: the (docker caching proxy|registry door) is working/)
    const html = await get(port, '/', { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' })
    t.equal(html.status, 200)
    t.match(html.headers.get('content-type'), /^text\/html/)
    t.match(html.body, /<title>crossdock status<\/title>/)
    t.notMatch(html.body, /<(script|link)[^>]+src=|https?:\/\/(?!x)[a-z]/i, 'self-contained: no external script, stylesheet or URL')
    t.equal(html.headers.get('vary'), 'accept')
  }
})

t.test('after a miss and hits through both doors, /status.json agrees with /metrics', async t => {
  const layer = Buffer.alloc(150_000, 3)
  const digest = upstream.addBlob(layer)
  upstream.fault = (_req, res) => {
    res.setHeader('ratelimit-limit', '100;w=21600')
    res.setHeader('ratelimit-remaining', '42;w=21600')
    return false
  }
  for (let i = 0; i < 2; i++) {
    const r = await proxiedRequest({ proxyPort: app.proxyPort, host: HUB, ca: app.caPem, path: `/v2/library/web/blobs/${digest}`, headers: { authorization: 'Bearer sekrit-token' } })
    t.equal(sha256(r.body), digest)
  }
  const door = await fetch(`http://127.0.0.1:${app.registryPort}/v2/docker.io/library/web/blobs/${digest}`)
  t.equal(sha256(Buffer.from(await door.arrayBuffer())), digest, 'a hit through the registry door')
  upstream.fault = undefined

  const s = await counted(app.proxyPort, 3)
  const m = (await get(app.proxyPort, '/metrics')).body
  const hub = s.traffic.sinceStart.byRegistry[HUB]
  t.same(hub, { hits: 2, misses: 1, bytesFromCache: 2 * layer.length, bytesFromUpstream: layer.length, hitRatio: 2 / 3 }, 'per registry')
  t.same(Object.keys(s.traffic.sinceStart.byRegistry), [HUB], 'one registry seen')
  t.same(s.traffic.lastHour.total, s.traffic.sinceStart.total, 'all of it within the last hour')
  t.equal(sample(m, 'crossdock_cache_requests_total', { registry: HUB, kind: 'blob', cache_status: 'HIT' }), hub.hits, 'hits = the HIT counter')
  t.equal(sample(m, 'crossdock_cache_requests_total', { registry: HUB, kind: 'blob', cache_status: 'MISS' }), hub.misses)
  t.equal(sample(m, 'crossdock_pull_through_bytes_total', { registry: HUB, kind: 'blob', source: 'cache' }), hub.bytesFromCache)
  t.equal(sample(m, 'crossdock_pull_through_bytes_total', { registry: HUB, kind: 'blob', source: 'upstream' }), hub.bytesFromUpstream)
  t.equal(s.cache.usedBytes, sample(m, 'crossdock_cache_size_bytes'))
  t.equal(s.cache.usedBytes, layer.length)
  t.equal(s.cache.maxBytes, 10 * 1024 * 1024, 'CACHE_MAX_SIZE')
  const up = s.upstreams.find(u => u.host === HUB)
  t.match(up, { errors: 0, rateLimitRemaining: 42, rateLimitLimit: 100 })
  const upstreamRequests = [...m.matchAll(new RegExp(`^crossdock_upstream_requests_total\\{host="${HUB}",status="\\d+"\\} (\\d+)$`, 'gm'))].reduce((n, x) => n + Number(x[1]), 0)
  t.ok(upstreamRequests >= 1)
  t.equal(up?.requests, upstreamRequests, 'requests = the sum of the upstream request counter for the host')
  t.equal(sample(m, 'crossdock_upstream_ratelimit_remaining', { host: HUB }), up?.rateLimitRemaining)
  t.same(s.repositories, { visible: true, top: [{ name: `${HUB}/library/web`, requests: 3 }] }, 'both doors count the same repository')
  t.equal(s.version, JSON.parse((await import('node:fs')).readFileSync('package.json', 'utf8')).version)
  t.equal(sample(m, 'crossdock_build_info', { version: s.version, node: process.version }), 1)
  t.same(s.doors, app.app.addresses())
  t.ok(s.registries.includes(HUB))
  t.equal(s.setup.command, `curl -fsS http://127.0.0.1:${app.proxyPort}/setup/systemd | bash`)
  t.equal(s.setup.caUrl, `http://127.0.0.1:${app.proxyPort}/ca.crt`, 'the proxy door, also when asked on the registry door')
  t.equal((await status(app.registryPort)).setup.caUrl, s.setup.caUrl)
  t.equal(sample(m, 'crossdock_http_request_duration_seconds_count', { door: 'proxy', method: 'GET', kind: 'blob' }), 2)
  t.equal(sample(m, 'crossdock_http_request_duration_seconds_count', { door: 'registry', method: 'GET', kind: 'blob' }), 1)
  t.equal(sample(m, 'crossdock_http_requests_in_flight', { door: 'director' }), 1, 'this scrape itself')
  t.equal(sample(m, 'crossdock_ready'), 1)
  t.notMatch(JSON.stringify(s), /sekrit/)
  t.notMatch(m, /library\/web/, 'repository names never in metrics')
})

t.test('a fill in flight shows its digest, bytes so far and clients attached', async t => {
  const body = Buffer.alloc(64 * 1024, 9)
  const digest = upstream.addBlob(body)
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  upstream.fault = async (req, res) => {
    if (!String(req.url).includes(digest)) return false
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, 'docker-content-digest': digest })
    res.write(body.subarray(0, 20_000))
    await gate
    res.end(body.subarray(20_000))
    return true
  }
  t.teardown(() => { upstream.fault = undefined })
  const pull = proxiedRequest({ proxyPort: app.proxyPort, host: HUB, ca: app.caPem, path: `/v2/library/slow/blobs/${digest}` })
  const fill = await waitFor('the fill at 20000 bytes', async () => (await status(app.registryPort)).fills.find(f => f.digest === digest && f.bytes === 20_000), { timeoutMs: 10_000 })
  t.same(fill, { digest, bytes: 20_000, expectedBytes: body.length, clients: 1 })
  const m = (await get(app.proxyPort, '/metrics')).body
  t.equal(sample(m, 'crossdock_cache_fills_in_flight'), 1)
  release()
  t.equal(sha256((await pull).body), digest)
  t.same((await status(app.proxyPort)).fills, [], 'gone once committed')
})

t.test('raw tunnels: opened and failed outcomes, bytes both ways, the open gauge', async t => {
  const tunnel = await connectThrough(app.proxyPort, 'tunnel.test:443')
  t.equal(tunnel.status, 200)
  const echoed = new Promise<Buffer>(resolve => { const got: Buffer[] = []; tunnel.socket.on('data', (b: Buffer) => { got.push(b); if (Buffer.concat(got).length >= 1000) resolve(Buffer.concat(got)) }) })
  tunnel.socket.write(Buffer.alloc(1000, 1))
  t.equal((await echoed).length, 1000, 'echoed through the tunnel')
  let m = (await get(app.proxyPort, '/metrics')).body
  t.equal(sample(m, 'crossdock_tunnels_open'), 1)
  t.equal(sample(m, 'crossdock_tunnels_total', { outcome: 'opened' }), 1)
  t.equal(sample(m, 'crossdock_tunnel_bytes_total', { direction: 'up' }), 1000)
  t.equal(sample(m, 'crossdock_tunnel_bytes_total', { direction: 'down' }), 1000)
  tunnel.socket.destroy()
  await waitFor('the tunnel closed', async () => sample((await get(app.proxyPort, '/metrics')).body, 'crossdock_tunnels_open') === 0, { timeoutMs: 5_000 })
  const refused = await connectThrough(app.proxyPort, 'dead.test:443')
  t.equal(refused.status, 502)
  refused.socket.destroy()
  m = (await get(app.proxyPort, '/metrics')).body
  t.equal(sample(m, 'crossdock_tunnels_total', { outcome: 'failed' }), 1)
})

t.test('with HTPASSWD_FILE, repository names only for clients that pass client auth', async t => {
  const file = join(app.dir, 'htpasswd')
  await writeFile(file, `alice:${bcrypt.hashSync('s3cret', 4)}\n`)
  const locked = await startApp({ HTPASSWD_FILE: file, UPSTREAM_CONNECT_TO: upstream.connectTo([HUB]), CACHE_MIN_FREE: '0' })
  t.teardown(locked.stop)
  const digest = upstream.addBlob(Buffer.from('private layer'))
  const basic = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`
  const r = await fetch(`http://127.0.0.1:${locked.registryPort}/v2/docker.io/team/secret-app/blobs/${digest}`, { headers: { authorization: basic } })
  t.equal(r.status, 200)
  await r.arrayBuffer()
  const anon = await counted(locked.proxyPort, 1)
  t.same(anon.repositories, { visible: false, top: [] }, 'anonymous: no names')
  t.equal(anon.traffic.sinceStart.total.misses, 1, 'counts are still there')
  t.same((await status(locked.proxyPort, { authorization: `Basic ${Buffer.from('alice:wrong').toString('base64')}` })).repositories.visible, false, 'wrong password: no names')
  t.same((await status(locked.registryPort, { authorization: basic })).repositories.top, [{ name: `${HUB}/team/secret-app`, requests: 1 }])
  const login = await get(locked.proxyPort, '/?login', { accept: 'text/html' })
  t.equal(login.status, 401, '?login challenges until credentials come')
  t.equal(login.headers.get('www-authenticate'), 'Basic realm="crossdock"')
  t.equal((await get(locked.proxyPort, '/?login', { accept: 'text/html', authorization: basic })).status, 200)
  t.equal((await get(locked.proxyPort, '/', { accept: 'text/html' })).status, 200, 'the page itself needs no credentials')
})
