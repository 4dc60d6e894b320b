// UPSTREAM_HTTP2: the upstream client offers h2 in ALPN; an upstream that takes it carries parallel
// requests as streams of one connection, an HTTP/1.1-only upstream is still served over HTTP/1.1.
import t from 'tap'
import http2 from 'node:http2'
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { Dialer } from '../../../src/upstream/dialer.js'
import { UpstreamClient } from '../../../src/upstream/upstream-client.js'
import { FakeUpstream, TEST_CA_FILE } from '../../helpers/fake-upstream.js'

const FIXTURES = new URL('../../fixtures/', import.meta.url)

function clientFor (port: number, http2: boolean): UpstreamClient {
  const dialer = new Dialer({ connectTo: [{ host: 'ghcr.io', port: 443, address: '127.0.0.1', toPort: port }], disableIpv6: true, connectTimeoutMs: 5000 })
  return new UpstreamClient({ dialer, verifySsl: true, upstreamCaFile: TEST_CA_FILE, connectTimeoutMs: 5000, readTimeoutMs: 5000, http2 })
}

async function readText (body: AsyncIterable<unknown>): Promise<string> {
  let s = ''
  for await (const c of body) s += String(c)
  return s
}

t.test('an h2 upstream: parallel requests share one connection, bodies intact', async t => {
  const protocols: string[] = []
  let connections = 0
  const server = http2.createSecureServer({ cert: readFileSync(new URL('upstream.crt', FIXTURES)), key: readFileSync(new URL('upstream.key', FIXTURES)), allowHTTP1: true }, (req, res) => {
    protocols.push(req.httpVersion)
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(`body of ${req.url ?? ''}`)
  })
  server.on('secureConnection', (s: TLSSocket) => { connections++; protocols.push(`alpn:${String(s.alpnProtocol)}`) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const client = clientFor((server.address() as AddressInfo).port, true)
  t.teardown(async () => { await client.close(); server.close() })
  const first = await client.request({ host: 'ghcr.io', method: 'GET', path: '/v2/' })
  t.equal(await readText(first.body), 'body of /v2/')
  const answers = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
    const r = await client.request({ host: 'ghcr.io', method: 'GET', path: `/v2/x/blobs/${i}` })
    return `${r.status} ${await readText(r.body)}`
  }))
  t.same(answers, Array.from({ length: 8 }, (_, i) => `200 body of /v2/x/blobs/${i}`))
  t.equal(connections, 1, 'one TLS connection for all nine requests')
  t.ok(protocols.includes('alpn:h2') && protocols.filter(p => p === '2.0').length === 9, 'all of them HTTP/2')
})

t.test('an HTTP/1.1-only upstream still answers with UPSTREAM_HTTP2 on', async t => {
  const up = new FakeUpstream()
  await up.start()
  const blob = up.addBlob('h1 bytes')
  const client = clientFor(up.port, true)
  t.teardown(async () => { await client.close(); await up.stop() })
  const r = await client.request({ host: 'ghcr.io', method: 'GET', path: `/v2/x/blobs/${blob}` })
  t.equal(r.status, 200)
  t.equal(await readText(r.body), 'h1 bytes')
})

t.test('UPSTREAM_HTTP2 is a boolean, off by default', async t => {
  const { loadConfig } = await import('../../../src/config/index.js')
  t.equal(loadConfig({}).upstreamHttp2, false)
  t.equal(loadConfig({ UPSTREAM_HTTP2: 'true' }).upstreamHttp2, true)
  t.throws(() => loadConfig({ UPSTREAM_HTTP2: 'maybe' }), /UPSTREAM_HTTP2="maybe"/)
})
