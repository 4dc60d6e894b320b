// The proxy door end to end in-process: director paths, interception with a minted certificate,
// faithful forwarding (HEAD, large bodies, headers), pushes by ALLOW_PUSH, tunnels for other hosts,
// and one-line 502/504 reasons when the upstream fails.
import t from 'tap'
import http from 'node:http'
import tls from 'node:tls'
import net from 'node:net'
import { randomBytes, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { FakeUpstream } from '../../helpers/fake-upstream.js'
import { startApp } from '../../helpers/start-app.js'
import { proxiedRequest, connectThrough, sha256 } from '../../helpers/proxy-client.js'

const FIXTURES = fileURLToPath(new URL('../../fixtures/', import.meta.url))

async function plainGet (port: number, path: string, method = 'GET'): Promise<{ status: number, body: string, headers: http.IncomingHttpHeaders }> {
  return await new Promise((resolve, reject) => {
    http.request({ host: '127.0.0.1', port, path, method }, res => {
      let body = ''
      res.on('data', d => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }))
    }).on('error', reject).end()
  })
}

t.test('MITM door', async t => {
  const upstream = new FakeUpstream()
  await upstream.start()
  const big = randomBytes(24 * 1024 * 1024 + 17)
  const img = upstream.addImage('library/tiny', '1', big)
  // A far end for tunnels, with a certificate from an unrelated CA.
  const far = tls.createServer({ cert: readFileSync(`${FIXTURES}other.crt`), key: readFileSync(`${FIXTURES}other.key`) }, s => s.pipe(s))
  await new Promise<void>(resolve => far.listen(0, '127.0.0.1', resolve))
  const farPort = (far.address() as net.AddressInfo).port
  const dead = net.createServer()
  await new Promise<void>(resolve => dead.listen(0, '127.0.0.1', resolve))
  const deadPort = (dead.address() as net.AddressInfo).port
  await new Promise<void>(resolve => dead.close(() => resolve()))

  const app = await startApp({
    UPSTREAM_CONNECT_TO: `${upstream.connectTo(['registry-1.docker.io', 'ghcr.io', 'auth.docker.io'])},tunnel.test:443:127.0.0.1:${farPort},quay.io:443:127.0.0.1:${deadPort},down.test:${deadPort}:127.0.0.1:${deadPort}`,
    CONNECT_ALLOWED_PORTS: `443 ${deadPort}`,
  })
  t.teardown(async () => { await app.stop(); await upstream.stop(); far.close() })
  const base = { proxyPort: app.proxyPort, ca: app.caPem }

  t.test('director paths', async t => {
    const root = await plainGet(app.proxyPort, '/')
    t.equal(root.status, 200)
    t.match(root.body, /working/)
    const ca = await plainGet(app.proxyPort, '/ca.crt')
    t.equal(ca.status, 200)
    t.equal(ca.body, readFileSync(`${app.config.caDir}/ca.crt`, 'utf8'), '/ca.crt serves the CA file')
    t.notMatch(ca.body, /PRIVATE KEY/)
    t.ok(new X509Certificate(ca.body).ca, 'it is a CA certificate')
    const setup = await plainGet(app.proxyPort, '/setup/systemd')
    t.equal(setup.status, 200)
    t.match(setup.body, `Environment="HTTPS_PROXY=http://127.0.0.1:${app.proxyPort}/"`)
    t.match(setup.body, `PROXY='http://127.0.0.1:${app.proxyPort}'`)
    t.match(setup.body, 'NO_PROXY=localhost,127.0.0.0/8')
    t.match(setup.body, 'update-ca-certificates')
    t.match(setup.body, 'update-ca-trust')
    t.match(setup.body, 'systemctl restart')
    const relay = await plainGet(app.proxyPort, 'http://example.com/')
    t.equal(relay.status, 403, 'absolute-URI requests are refused: no open relay')
    t.equal((await plainGet(app.proxyPort, '/nope')).status, 404)
  })

  t.test('intercepts Docker Hub with a leaf from crossdock CA and forwards faithfully', async t => {
    const before = upstream.hits.length
    const res = await proxiedRequest({ ...base, host: 'registry-1.docker.io', path: '/v2/' })
    t.equal(res.status, 200)
    t.equal(res.peerCertificate.subjectaltname, 'DNS:registry-1.docker.io')
    t.equal(new X509Certificate(app.caPem).subject.includes(res.peerCertificate.issuer.CN), true, 'issued by crossdock CA')
    t.equal(upstream.hits.length, before + 1)
    t.equal(upstream.hits.at(-1)?.host, 'registry-1.docker.io', 'upstream sees the real Host')

    const man = await proxiedRequest({ ...base, host: 'registry-1.docker.io', path: '/v2/library/tiny/manifests/1', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
    t.equal(man.status, 200)
    t.same(man.body, img.manifest.body)
    t.equal(man.headers['docker-content-digest'], img.manifest.digest)
    t.equal(man.headers['content-type'], 'application/vnd.oci.image.manifest.v1+json')
    t.equal(upstream.hits.at(-1)?.headers.accept, 'application/vnd.oci.image.manifest.v1+json', 'Accept forwarded')

    const heads = upstream.count('HEAD', '/manifests/1')
    const gets = upstream.count('GET', '/manifests/1')
    const head = await proxiedRequest({ ...base, host: 'registry-1.docker.io', method: 'HEAD', path: '/v2/library/tiny/manifests/1' })
    t.equal(head.status, 200)
    t.equal(head.body.length, 0)
    t.equal(head.headers['content-length'], String(img.manifest.body.length))
    t.equal(upstream.count('HEAD', '/manifests/1'), heads + 1, 'HEAD stays HEAD')
    t.equal(upstream.count('GET', '/manifests/1'), gets, 'no GET for a HEAD')

    const blob = await proxiedRequest({ ...base, host: 'registry-1.docker.io', path: `/v2/library/tiny/blobs/${img.layer}` })
    t.equal(blob.status, 200)
    t.equal(blob.body.length, big.length)
    t.equal(sha256(blob.body), img.layer, 'a 24 MiB body arrives intact')

    const ghcr = await proxiedRequest({ ...base, host: 'ghcr.io', path: '/v2/library/tiny/manifests/1' })
    t.equal(ghcr.status, 200)
    t.equal(upstream.hits.at(-1)?.host, 'ghcr.io')
    const missing = await proxiedRequest({ ...base, host: 'ghcr.io', path: '/v2/nope/manifests/1' })
    t.equal(missing.status, 404, 'upstream status passed through')
    t.match(missing.body.toString(), /MANIFEST_UNKNOWN/)
  })

  t.test('pushes are refused without ALLOW_PUSH', async t => {
    const before = upstream.hits.length
    const res = await proxiedRequest({ ...base, host: 'registry-1.docker.io', method: 'POST', path: '/v2/library/tiny/blobs/uploads/' })
    t.equal(res.status, 405)
    const err = JSON.parse(res.body.toString())
    t.equal(err.errors[0].code, 'UNSUPPORTED')
    t.match(err.errors[0].message, /ALLOW_PUSH/)
    t.equal(upstream.hits.length, before, 'nothing reached the upstream')
  })

  t.test('a host not intercepted is tunnelled untouched', async t => {
    const tunnel = await connectThrough(app.proxyPort, 'tunnel.test:443')
    t.equal(tunnel.status, 200)
    const s = tls.connect({ socket: tunnel.socket, servername: 'tunnel.test', ca: readFileSync(`${FIXTURES}other-ca.crt`) })
    await new Promise<void>((resolve, reject) => { s.once('secureConnect', resolve); s.once('error', reject) })
    const cert = s.getPeerCertificate()
    t.equal(cert.fingerprint256, new X509Certificate(readFileSync(`${FIXTURES}other.crt`)).fingerprint256, 'the client saw the far end certificate')
    s.write('ping')
    const echoed = await new Promise<string>(resolve => s.once('data', d => resolve(d.toString())))
    t.equal(echoed, 'ping')
    s.destroy()
    // And crossdock's CA cannot validate that tunnel: TLS is end to end.
    const tunnel2 = await connectThrough(app.proxyPort, 'tunnel.test:443')
    const s2 = tls.connect({ socket: tunnel2.socket, servername: 'tunnel.test', ca: app.caPem })
    const err = await new Promise<Error>(resolve => s2.once('error', resolve))
    t.match(err.message, /self-signed|unable to verify|certificate/i)
  })

  t.test('bad CONNECT authority and unreachable upstreams get clear errors', async t => {
    const bad = await connectThrough(app.proxyPort, 'no-port-here')
    t.equal(bad.status, 400)
    const down = await proxiedRequest({ ...base, host: 'quay.io', path: '/v2/org/app/tags/list' })
    t.equal(down.status, 502)
    t.match(down.body.toString(), /^upstream quay\.io(:443)?: connection refused\n$/)
    const ping = await proxiedRequest({ ...base, host: 'quay.io', path: '/v2/' })
    t.equal(ping.status, 200, 'the /v2/ ping never depends on upstream health')
    t.equal(ping.headers['docker-distribution-api-version'], 'registry/2.0')
    // (A mapped name: 127.0.0.1 itself is refused by the destination policy.)
    const tunnelDown = await connectThrough(app.proxyPort, `down.test:${deadPort}`)
    t.equal(tunnelDown.status, 502)
    t.match(tunnelDown.body, /connection refused/)
    const otherPort = await connectThrough(app.proxyPort, `127.0.0.1:${app.proxyPort}`)
    t.equal(otherPort.status, 403, 'CONNECT to a port outside CONNECT_ALLOWED_PORTS is refused')
    t.match(otherPort.body, /CONNECT_ALLOWED_PORTS/)
  })

  t.test('requests are logged, one line each, with door and host', async t => {
    const lines = app.logs.filter(l => l.msg === 'request' && l.door === 'proxy' && l.host === 'registry-1.docker.io')
    t.ok(lines.length >= 4)
    const blobLine = lines.find(l => String(l.path).includes('/blobs/'))
    t.equal(blobLine?.bytes, big.length)
    t.equal(blobLine?.status, 200)
    t.ok(app.logs.some(l => l.msg === 'tunnel' && l.host === 'tunnel.test:443' && l.cacheStatus === 'TUNNEL'))
  })
})

t.test('ALLOW_PUSH=true streams pushes through; stalls become 504', async t => {
  const upstream = new FakeUpstream()
  await upstream.start()
  upstream.fault = (req, res) => {
    if (req.url?.startsWith('/v2/stall/') === true) { res.writeHead(200); res.write('x'); return true } // then silence
    return false
  }
  const app = await startApp({ UPSTREAM_CONNECT_TO: upstream.connectTo(['registry-1.docker.io']), ALLOW_PUSH: 'true', PROXY_READ_TIMEOUT: '1s' })
  t.teardown(async () => { await app.stop(); await upstream.stop() })
  const body = randomBytes(3 * 1024 * 1024)
  const res = await proxiedRequest({ proxyPort: app.proxyPort, ca: app.caPem, host: 'registry-1.docker.io', method: 'PATCH', path: '/v2/x/blobs/uploads/abc', body, headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length) } })
  t.equal(res.status, 202)
  t.equal(res.headers['x-received-bytes'], String(body.length), 'the upstream received every pushed byte')

  const slow = await proxiedRequest({ proxyPort: app.proxyPort, ca: app.caPem, host: 'registry-1.docker.io', path: '/v2/stall/manifests/x' }).catch(err => err as Error)
  t.ok(slow instanceof Error || (slow as { status: number }).status === 504, 'a stalled body is aborted, never completed cleanly')
  upstream.fault = (req, res) => { if (req.url?.startsWith('/v2/hang/') === true) { void res; return true } return false }
  const hang = await proxiedRequest({ proxyPort: app.proxyPort, ca: app.caPem, host: 'registry-1.docker.io', path: '/v2/hang/manifests/x' })
  t.equal(hang.status, 504)
  t.match(hang.body.toString(), /timed out/)
})
