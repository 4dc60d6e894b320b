/**
 * Issue 14, findings 3, 4 and 5, through both doors (the proxy door with AUTH_REGISTRIES Basic
 * added, the registry door with the token it obtained itself):
 * - 3: an upstream redirect to an internal address (http or https, any spelling, a name resolving
 *   to loopback, cloud metadata) is refused with a 403 and nothing reaches the internal server;
 * - 4: an https→http redirect to the same host is refused before anything is sent, so neither the
 *   Basic credentials nor the bearer token travel in cleartext; Authorization is kept on a
 *   same-origin hop and dropped on a change of host or port;
 * - at most 5 redirects are followed;
 * - 5: a 401 challenge whose realm is internal or plain http is never requested.
 * The internal server is a plain HTTP server on 127.0.0.5 that counts connections, so "nothing
 * reached it" is a number.
 */
import t, { type Test } from 'tap'
import http from 'node:http'
import net from 'node:net'
import { startApp, type StartedApp } from '../../helpers/start-app.js'
import { FakeUpstream, sha256 } from '../../helpers/fake-upstream.js'
import { proxiedRequest } from '../../helpers/proxy-client.js'

const SECRET = 'Robot-Pass-71c3e'
const TOKEN = 'door-token-5b9d2'
const BASIC = `Basic ${Buffer.from(`robot:${SECRET}`).toString('base64')}`

interface Internal { port: number, connections: () => number, close: () => void }

async function startInternal (): Promise<Internal> {
  let n = 0
  const server = http.createServer((_req, res) => { res.end('internal page: metadata and secrets\n') })
  server.on('connection', () => { n++ })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.5', resolve))
  return { port: (server.address() as net.AddressInfo).port, connections: () => n, close: () => { server.closeAllConnections(); server.close() } }
}

interface Rig { app: StartedApp, up: FakeUpstream, internal: Internal, redirect: { to?: string, hops: number, realm?: string } }

async function rig (t: Test): Promise<Rig> {
  const up = new FakeUpstream()
  await up.start()
  const internal = await startInternal()
  const redirect: Rig['redirect'] = { hops: 0 }
  up.fault = (req, res, hit) => {
    const path = hit.path
    if (path.startsWith('/token')) { up.send(res, 200, 'application/json', Buffer.from(JSON.stringify({ token: TOKEN, expires_in: 300 }))); return true }
    const hop = /^\/hop\/(\d+)\/(sha256:[0-9a-f]{64})$/.exec(path)
    if (hop !== null) {
      const k = Number(hop[1])
      res.writeHead(307, { location: k < redirect.hops ? `/hop/${k + 1}/${hop[2]}` : `/cdn/${hop[2]}`, 'content-length': 0 }).end()
      return true
    }
    if (!path.startsWith('/v2/team/') && !path.startsWith('/v2/realm/')) return false
    if (req.headers.authorization === undefined) {
      const realm = path.startsWith('/v2/realm/') ? redirect.realm : 'https://private.test/token'
      res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm ?? ''}",service="ghcr.io"`, 'content-length': 0 }).end()
      return true
    }
    const blob = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(path)
    if (blob !== null && req.method === 'GET' && redirect.to !== undefined) {
      res.writeHead(307, { location: redirect.to.replace('DIGEST', blob[1]), 'content-length': 0 }).end()
      return true
    }
    return false
  }
  const app = await startApp({
    AUTH_REGISTRIES: `ghcr.io:robot:${SECRET}`,
    UPSTREAM_CONNECT_TO: `${up.connectTo(['ghcr.io', 'private.test', 'cdn.test'])},ghcr.io:8443:127.0.0.1:${up.port},ghcr.io:80:127.0.0.5:${internal.port},private.test:80:127.0.0.5:${internal.port}`,
  })
  t.teardown(async () => { await app.stop(); await up.stop(); internal.close() })
  return { app, up, internal, redirect }
}

interface Pulled { door: string, digest: string, sent: string, status: number, body: string }

/** A blob pull through each door, each of its own blob (the doors share one cache). */
async function pullBoth (r: Rig, label: string): Promise<Pulled[]> {
  const sent = [`${label} (proxy door)`, `${label} (registry door)`]
  const [d1, d2] = sent.map(b => r.up.addBlob(b))
  const viaProxy = await proxiedRequest({ proxyPort: r.app.proxyPort, ca: r.app.caPem, host: 'ghcr.io', path: `/v2/team/app/blobs/${d1}` })
  const viaDoor = await fetch(`http://127.0.0.1:${r.app.registryPort}/v2/ghcr.io/team/app/blobs/${d2}`)
  return [
    { door: 'proxy door', digest: d1, sent: sent[0], status: viaProxy.status, body: viaProxy.body.toString() },
    { door: 'registry door', digest: d2, sent: sent[1], status: viaDoor.status, body: await viaDoor.text() },
  ]
}

t.test('3+4. redirects to internal addresses or to plain http are refused, nothing reaches them', async t => {
  const r = await rig(t)
  const p = r.internal.port
  const targets: Array<[string, RegExp]> = [
    [`http://127.0.0.5:${p}/internal`, /only https is followed/],
    [`https://127.0.0.5:${p}/internal`, /loopback/],
    [`https://0x7f000005:${p}/internal`, /loopback/],
    [`https://2130706437:${p}/internal`, /loopback/],
    [`https://[::ffff:127.0.0.5]:${p}/internal`, /loopback/],
    [`https://localhost:${p}/internal`, /loopback/],
    ['https://169.254.169.254/latest/meta-data/', /link-local/],
    ['https://[fe80::1]/x', /link-local/],
    // Finding 4: the same host over http (mapped to the internal server, so a leak would be seen).
    ['http://ghcr.io/v2/team/app/blobs/DIGEST', /only https is followed/],
  ]
  for (const [i, [to, why]] of targets.entries()) {
    r.redirect.to = to
    for (const answer of await pullBoth(r, `blob for redirect case ${i}`)) {
      t.equal(answer.status, 403, `${answer.door}, ${to}: 403`)
      t.match(answer.body, why, `${answer.door}, ${to}: says why`)
      t.notMatch(answer.body, /internal page/, `${answer.door}: nothing of the internal page relayed`)
    }
  }
  t.equal(r.internal.connections(), 0, 'the internal server was never connected to')
  t.ok(r.up.hits.some(h => h.headers.authorization === BASIC), 'the proxy door did send Basic credentials upstream (so they were in flight)')
  t.ok(r.up.hits.some(h => h.headers.authorization === `Bearer ${TOKEN}`), 'the registry door did send its token upstream')
  const metrics = await (await fetch(`http://127.0.0.1:${r.app.proxyPort}/metrics`)).text()
  t.match(metrics, /crossdock_destination_refused_total\{reason="insecure-scheme",purpose="upstream"\} 4\n/)
  t.match(metrics, /crossdock_destination_refused_total\{reason="loopback",purpose="upstream"\} 10\n/)
})

t.test('4. Authorization stays on a same-origin hop and is dropped on a change of host or port', async t => {
  const r = await rig(t)
  const cases: Array<[string, string, boolean]> = [
    ['/cdn/DIGEST', 'ghcr.io', true],
    ['https://ghcr.io:8443/cdn/DIGEST', 'ghcr.io:8443', false],
    ['https://cdn.test/cdn/DIGEST', 'cdn.test', false],
  ]
  for (const [i, [to, host, kept]] of cases.entries()) {
    r.redirect.to = to
    const pulled = await pullBoth(r, `blob for authorization case ${i}`)
    for (const [n, answer] of pulled.entries()) {
      t.equal(answer.status, 200, `${answer.door}, ${to}: followed`)
      t.equal(answer.body, answer.sent, `${answer.door}: the bytes`)
      const hops = r.up.hits.filter(h => h.path === `/cdn/${answer.digest}`)
      t.same(hops.map(h => h.host), [host], `${answer.door}, ${to}: one hop to ${host}`)
      t.equal(hops[0]?.headers.authorization, kept ? [BASIC, `Bearer ${TOKEN}`][n] : undefined, `${answer.door}, ${to}: Authorization ${kept ? 'kept' : 'dropped'}`)
    }
  }
})

t.test('at most 5 redirects are followed', async t => {
  const r = await rig(t)
  r.redirect.to = '/hop/1/DIGEST'
  r.redirect.hops = 4 // blob → hop 1 … hop 4 → cdn: five redirects
  for (const answer of await pullBoth(r, 'five redirects away')) {
    t.equal(answer.status, 200, `${answer.door}: five redirects are followed`)
    t.equal(answer.body, answer.sent)
  }
  r.redirect.hops = 5
  for (const answer of await pullBoth(r, 'six redirects away')) {
    t.equal(answer.status, 502, `${answer.door}: a sixth is not`)
    t.match(answer.body, /more than 5 redirects/)
    t.equal(r.up.count('GET', `/cdn/${answer.digest}`), 0, 'the end of the long chain was never reached')
  }
})

t.test('5. a token realm on an internal address or plain http is never requested', async t => {
  const r = await rig(t)
  const p = r.internal.port
  const realms: Array<[string, RegExp]> = [
    [`http://127.0.0.5:${p}/token`, /only https is followed/],
    [`https://127.0.0.5:${p}/token`, /loopback/],
    [`https://0x7f000005:${p}/token`, /loopback/],
    [`https://localhost:${p}/token`, /loopback/],
    [`https://[::1]:${p}/token`, /loopback/],
    ['https://169.254.169.254/token', /link-local/],
    ['http://private.test/token', /only https is followed/],
  ]
  const tokenFetches = r.up.count('GET', '/token')
  for (const [realm, why] of realms) {
    r.redirect.realm = realm
    const res = await fetch(`http://127.0.0.1:${r.app.registryPort}/v2/ghcr.io/realm/app/manifests/v1`)
    t.equal(res.status, 403, `${realm}: 403`)
    t.match(await res.text(), why, `${realm}: says why`)
  }
  t.equal(r.internal.connections(), 0, 'no realm request reached the internal server')
  t.equal(r.up.count('GET', '/token'), tokenFetches, 'nor the plain-http realm')
  r.redirect.realm = 'https://private.test/token'
  r.up.addManifest('realm/app', 'v1', { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256('{}'), size: 2 }, layers: [] }, 'application/vnd.oci.image.manifest.v1+json')
  const ok = await fetch(`http://127.0.0.1:${r.app.registryPort}/v2/ghcr.io/realm/app/manifests/v1`)
  t.equal(ok.status, 200, 'an https realm on a public name still works')
})
