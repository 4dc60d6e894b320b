// UPSTREAM_PROXY (egress through a corporate CONNECT proxy), VERIFY_SSL and unknown-CA upstreams.
import t from 'tap'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { FakeUpstream } from '../../helpers/fake-upstream.js'
import { startApp } from '../../helpers/start-app.js'
import { proxiedRequest, connectThrough } from '../../helpers/proxy-client.js'

const FIXTURES = fileURLToPath(new URL('../../fixtures/', import.meta.url))

/** A minimal egress CONNECT proxy that records what it was asked and requires Basic credentials. */
async function startEgressProxy (): Promise<{ port: number, connects: Array<{ authority: string, auth?: string }>, close: () => void }> {
  const connects: Array<{ authority: string, auth?: string }> = []
  const server = http.createServer((_req, res) => { res.writeHead(405); res.end() })
  server.on('connect', (req, socket: net.Socket, head) => {
    connects.push({ authority: String(req.url), auth: req.headers['proxy-authorization'] })
    if (req.headers['proxy-authorization'] !== `Basic ${Buffer.from('corp:s3cret').toString('base64')}`) {
      socket.end('HTTP/1.1 407 Proxy Authentication Required\r\n\r\n')
      return
    }
    const [host, port] = String(req.url).split(':')
    const far = net.connect(Number(port), host, () => {
      socket.write('HTTP/1.1 200 OK\r\n\r\n')
      if (head.length > 0) far.write(head)
      socket.pipe(far).pipe(socket)
    })
    far.on('error', () => socket.destroy())
    socket.on('error', () => far.destroy())
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as net.AddressInfo).port, connects, close: () => { server.closeAllConnections(); server.close() } }
}

t.test('UPSTREAM_PROXY carries upstream requests and tunnels', async t => {
  const upstream = new FakeUpstream()
  await upstream.start()
  upstream.addImage('library/tiny', '1', 'layer-bytes')
  const egress = await startEgressProxy()
  const app = await startApp({
    UPSTREAM_CONNECT_TO: upstream.connectTo(['registry-1.docker.io', 'tunnel.test']),
    UPSTREAM_PROXY: `http://corp:s3cret@127.0.0.1:${egress.port}`,
  })
  t.teardown(async () => { await app.stop(); await upstream.stop(); egress.close() })

  const res = await proxiedRequest({ proxyPort: app.proxyPort, ca: app.caPem, host: 'registry-1.docker.io', path: '/v2/library/tiny/manifests/1' })
  t.equal(res.status, 200)
  t.ok(egress.connects.length >= 1, 'upstream connections went through the egress proxy')
  t.ok(egress.connects.every(c => c.authority === `127.0.0.1:${upstream.port}`), 'to the UPSTREAM_CONNECT_TO address')
  const upstreamConnects = egress.connects.length
  t.equal(upstream.hits.at(-1)?.host, 'registry-1.docker.io', 'Host and SNI keep the real name')

  const tunnel = await connectThrough(app.proxyPort, 'tunnel.test:443')
  t.equal(tunnel.status, 200)
  tunnel.socket.destroy()
  t.equal(egress.connects.length, upstreamConnects + 1, 'tunnels use the egress proxy too')
  t.notOk(JSON.stringify(app.logs).includes('s3cret'), 'egress credentials never reach the logs')

  const wrong = await startApp({ UPSTREAM_CONNECT_TO: upstream.connectTo(['registry-1.docker.io']), UPSTREAM_PROXY: `http://corp:nope@127.0.0.1:${egress.port}` })
  t.teardown(() => wrong.stop())
  const refused = await proxiedRequest({ proxyPort: wrong.proxyPort, ca: wrong.caPem, host: 'registry-1.docker.io', path: '/v2/library/tiny/tags/list' })
  t.equal(refused.status, 502)
  t.match(refused.body.toString(), /upstream proxy .* refused CONNECT .*407/)
})

t.test('upstream certificates are verified unless VERIFY_SSL=false', async t => {
  // An upstream whose certificate comes from a CA crossdock does not trust.
  const stranger = https.createServer({ cert: readFileSync(`${FIXTURES}other.crt`), key: readFileSync(`${FIXTURES}other.key`) }, (_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{}') })
  await new Promise<void>(resolve => stranger.listen(0, '127.0.0.1', resolve))
  const port = (stranger.address() as net.AddressInfo).port
  t.teardown(() => { stranger.closeAllConnections(); stranger.close() })

  const strict = await startApp({ UPSTREAM_CONNECT_TO: `ghcr.io:443:127.0.0.1:${port}` })
  t.teardown(() => strict.stop())
  // Not the /v2/ ping: that one answers 200 whatever the upstream's health.
  const refused = await proxiedRequest({ proxyPort: strict.proxyPort, ca: strict.caPem, host: 'ghcr.io', path: '/v2/org/app/tags/list' })
  t.equal(refused.status, 502)
  t.match(refused.body.toString(), /^upstream ghcr\.io(:443)?: TLS: /)
  t.equal(refused.headers['x-crossdock-error'], 'ERR_UPSTREAM_TLS')

  const lax = await startApp({ UPSTREAM_CONNECT_TO: `ghcr.io:443:127.0.0.1:${port}`, VERIFY_SSL: 'false' })
  t.teardown(() => lax.stop())
  const ok = await proxiedRequest({ proxyPort: lax.proxyPort, ca: lax.caPem, host: 'ghcr.io', path: '/v2/org/app/tags/list' })
  t.equal(ok.status, 200)
  t.equal(ok.body.toString(), '{}', 'the body came from the upstream')
})
