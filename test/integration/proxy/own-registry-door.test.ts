// A host whose HTTP_PROXY is crossdock but whose NO_PROXY misses crossdock's name sends its registry
// requests for crossdock's registry port to the proxy door: absolute-URI requests and CONNECTs
// naming the registry door are served in-process (push included); anything else is refused, with an
// OCI error body on /v2/ paths so docker prints the reason, and never relayed.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { startApp, type StartedApp } from '../../helpers/start-app.js'

let app: StartedApp

/** One request on a fresh connection to the proxy door, with `target` as the request line's target. */
async function viaProxy (method: string, target: string, body?: Buffer): Promise<{ status: number, headers: http.IncomingHttpHeaders, body: Buffer }> {
  return await new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: app.proxyPort, method, path: target, agent: false, headers: body === undefined ? {} : { 'content-length': body.length, 'content-type': 'application/octet-stream' } }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

t.before(async () => { app = await startApp() })
t.teardown(async () => { await app.stop() })

t.test('absolute-URI requests to our registry door are served in-process, push included', async t => {
  const door = `http://127.0.0.1:${app.registryPort}`
  const base = await viaProxy('GET', `${door}/v2/`)
  t.equal(base.status, 200)
  t.equal(base.headers['docker-distribution-api-version'], 'registry/2.0')

  const blob = randomBytes(4096)
  const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`
  const put = await viaProxy('POST', `${door}/v2/team/app/blobs/uploads/?digest=${digest}`, blob)
  t.equal(put.status, 201, put.body.toString())
  const direct = await new Promise<Buffer>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: app.registryPort, path: `/v2/team/app/blobs/${digest}` }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve(Buffer.concat(chunks)))
    }).on('error', reject)
  })
  t.ok(direct.equals(blob), 'the blob pushed through the proxy door is in the hosted registry')
  t.equal((await viaProxy('HEAD', `http://localhost:${app.registryPort}/v2/team/app/blobs/${digest}`)).status, 200, 'by the name localhost too')
})

t.test('a CONNECT to our registry port reaches the registry door', async t => {
  const sock = net.connect(app.proxyPort, '127.0.0.1')
  t.teardown(() => sock.destroy())
  let text = ''
  sock.on('data', (c: Buffer) => { text += c.toString('latin1') })
  sock.write(`CONNECT 127.0.0.1:${app.registryPort} HTTP/1.1\r\nHost: 127.0.0.1:${app.registryPort}\r\n\r\nGET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`)
  await new Promise(resolve => sock.once('close', resolve))
  t.match(text, /^HTTP\/1\.1 200 Connection Established\r\n\r\nHTTP\/1\.1 200 OK\r\n/)
  t.match(text, /docker-distribution-api-version: registry\/2\.0/)
})

t.test('other targets are refused and never reached; /v2/ refusals are OCI errors', async t => {
  // Something else listening on another loopback address at the registry port: it must see nothing.
  const hits: string[] = []
  const other = http.createServer((req, res) => { hits.push(req.url ?? ''); res.end('relayed!') })
  await new Promise<void>(resolve => other.listen(app.registryPort, '127.0.0.2', resolve))
  t.teardown(() => other.close())
  const port = (other.address() as AddressInfo).port

  const v2 = await viaProxy('GET', `http://127.0.0.2:${port}/v2/`)
  t.equal(v2.status, 403)
  t.match(v2.headers['content-type'], /^application\/json/)
  t.same(JSON.parse(v2.body.toString()), {
    errors: [{ code: 'DENIED', message: `crossdock: not an open HTTP proxy: http://127.0.0.2:${port}/v2/ is not this crossdock's registry door; add its host to NO_PROXY, or use CONNECT (HTTPS_PROXY) for registries`, detail: null }],
  })
  const push = await viaProxy('PUT', `http://127.0.0.2:${port}/v2/x/manifests/1`, Buffer.from('{}'))
  t.equal(push.status, 403)
  t.equal(JSON.parse(push.body.toString()).errors[0].code, 'DENIED')
  const page = await viaProxy('GET', `http://127.0.0.2:${port}/index.html`)
  t.equal(page.status, 403)
  t.match(page.body.toString(), /^crossdock: not an open HTTP proxy: /)
  t.same(hits, [], 'nothing was relayed')
})
