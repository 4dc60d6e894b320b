/**
 * Abuse and secrets (issue 10 item 5), end to end against the started app:
 * - CONNECT reaches only CONNECT_ALLOWED_PORTS (plus ports of configured registries);
 * - the proxy port is no open relay: absolute-URI requests of every method and `Host:` tricks are
 *   answered by crossdock itself, and nothing is dialled;
 * - the CA key is mode 0600 and no path spelling on either door serves it;
 * - passwords, tokens and Proxy-Authorization never appear in logs or /metrics, plain or base64;
 * - failed logins are throttled per source address on both doors (and only for that address).
 *
 * Every dial goes to a counting TCP sink on loopback (UPSTREAM_CONNECT_TO with an empty host and
 * port matches any name), so "nothing was dialled" is a number, and no packet leaves 127/8.
 */
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import bcrypt from 'bcryptjs'
import { startApp } from '../../helpers/start-app.js'
import { FakeUpstream } from '../../helpers/fake-upstream.js'
import { connectThrough, proxiedRequest } from '../../helpers/proxy-client.js'

/** A TCP server that counts connections and answers nothing useful (a 404 to any HTTP). */
async function startSink (): Promise<{ port: number, connections: () => number, close: () => void }> {
  let n = 0
  const server = net.createServer(s => { n++; s.on('error', () => {}); s.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n') })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as net.AddressInfo).port, connections: () => n, close: () => server.close() }
}

/** One raw request (any target, any Host) on `port`; resolves with the status line and body. */
async function raw (port: number, head: string, localAddress = '127.0.0.1'): Promise<{ status: number, text: string }> {
  const s = net.connect({ port, host: '127.0.0.1', localAddress })
  s.on('error', () => {})
  s.write(head)
  let text = ''
  s.on('data', (d: Buffer) => { text += d.toString('latin1') })
  await new Promise(resolve => s.once('close', resolve))
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text }
}

t.test('CONNECT only to allowed ports', async t => {
  const sink = await startSink()
  const app = await startApp({ CONNECT_ALLOWED_PORTS: '443,8443', REGISTRIES: 'myreg.test:5443', UPSTREAM_CONNECT_TO: `::127.0.0.1:${sink.port}` })
  t.teardown(async () => { await app.stop(); sink.close() })
  for (const [authority, want] of [['example.test:443', 200], ['example.test:8443', 200], ['myreg.test:5443', 200], ['example.test:5443', 200],
    ['example.test:22', 403], ['example.test:80', 403], ['127.0.0.1:6379', 403], ['[::1]:25', 403], ['registry-1.docker.io:80', 403], ['example.test:65535', 403]] as const) {
    const before = sink.connections()
    const r = await connectThrough(app.proxyPort, authority)
    r.socket.destroy()
    t.equal(r.status, want, authority)
    // A tunnel dials the sink; an intercepted host (myreg.test) is answered by crossdock itself.
    if (want === 403) t.equal(sink.connections(), before, `${authority}: nothing dialled`)
  }
})

t.test('no open relay: absolute URIs and Host tricks are answered by crossdock, never forwarded', async t => {
  const sink = await startSink()
  const up = new FakeUpstream()
  await up.start()
  const app = await startApp({ UPSTREAM_CONNECT_TO: `::127.0.0.1:${sink.port}` })
  t.teardown(async () => { await app.stop(); await up.stop(); sink.close() })
  const targets = [`http://127.0.0.1:${up.port}/v2/`, 'http://registry-1.docker.io/v2/library/alpine/manifests/latest', 'https://ghcr.io/v2/', `http://127.0.0.1:${app.proxyPort}/ca.crt`, 'http://[::1]/', 'HTTP://EXAMPLE.TEST/', 'ftp://example.test/', '//example.test/x']
  for (const method of ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE']) {
    for (const target of targets) {
      const r = await raw(app.proxyPort, `${method} ${target} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n`)
      // `//host/x` is a path (origin-form), not an absolute URI: crossdock's own 404/405 is right.
      const own = target.startsWith('//') ? [400, 404, 405] : [403]
      t.ok(own.includes(r.status), `${method} ${target}: ${r.status}`)
    }
  }
  // Host tricks: a path target with a foreign Host is crossdock's own page (or 404), not a fetch.
  for (const host of ['registry-1.docker.io', `127.0.0.1:${up.port}`, 'example.test:80', 'localhost']) {
    t.equal((await raw(app.proxyPort, `GET /v2/ HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)).status, 404, `GET /v2/ with Host: ${host}`)
    t.match((await raw(app.proxyPort, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)).text, /crossdock \d+\.\d+\.\d+\S*: the docker caching proxy is working/, `GET / with Host: ${host}`)
  }
  // The registry port takes absolute URIs too (HTTP/1.1 servers must): they are its own paths.
  t.equal((await raw(app.registryPort, `GET http://127.0.0.1:${up.port}/v2/x/manifests/latest HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n`)).status, 404)
  t.equal(sink.connections(), 0, 'nothing was dialled')
  t.equal(up.hits.length, 0, 'nothing reached the would-be target')
})

t.test('the CA key is mode 0600 and never served', async t => {
  const app = await startApp({ UPSTREAM_CONNECT_TO: '::127.0.0.1:1' })
  t.teardown(async () => { await app.stop() })
  const keyFile = join(app.config.caDir, 'ca.key')
  t.equal((await stat(keyFile)).mode & 0o777, 0o600, 'ca.key is 0600')
  const key = await readFile(keyFile, 'utf8')
  // A line of the key's base64 body: found in any response that leaks it, whatever the framing.
  const keyLine = key.split('\n')[3]
  const paths = ['/ca.key', '/../ca/ca.key', '/ca.crt/../ca.key', '/ca/ca.key', '/%2e%2e/ca/ca.key', '/ca%2ekey', '/ca.crt%2f..%2fca.key', '/ca.crt/..%2fca.key',
    '//ca.key', '/./ca.key', '/CA.KEY', '/ca.key%00.crt', '/ca.crt%00/../ca.key', '/setup/../ca.key', '/ca.crt?/../ca.key', '/%2fca.key', '/..%2f..%2fca%2fca.key',
    '/ca.crt/', '/ca.crt;/ca.key', '/ca.pem', '/ca', '/ca/', '/setup/systemd?service=../ca.key', '/metrics/../ca.key']
  for (const port of [app.proxyPort, app.registryPort]) {
    for (const path of paths) {
      const r = await raw(port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
      t.ok(!r.text.includes('PRIVATE KEY') && !r.text.includes(keyLine), `${port === app.proxyPort ? 'proxy' : 'registry'} door ${path}: ${r.status}, no key`)
    }
  }
  t.match((await raw(app.proxyPort, 'GET /ca.crt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).text, /BEGIN CERTIFICATE/, '/ca.crt still serves the certificate')
})

/** A CONNECT egress proxy that wants `user:pass` and tunnels to `to` (the fake upstream). */
async function startEgress (user: string, pass: string, to: number): Promise<{ port: number, close: () => void }> {
  const server = http.createServer((_req, res) => { res.writeHead(405); res.end() })
  server.on('connect', (req, socket: net.Socket, head: Buffer) => {
    socket.on('error', () => {})
    if (req.headers['proxy-authorization'] !== `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`) { socket.end('HTTP/1.1 407 Proxy Authentication Required\r\n\r\n'); return }
    const far = net.connect(to, '127.0.0.1', () => { socket.write('HTTP/1.1 200 OK\r\n\r\n'); far.write(head); socket.pipe(far).pipe(socket) })
    far.on('error', () => socket.destroy())
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as net.AddressInfo).port, close: () => { server.closeAllConnections(); server.close() } }
}

const basic = (user: string, pass: string): string => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`

t.test('credentials, tokens and Proxy-Authorization never reach logs or metrics', async t => {
  const secrets = {
    htpasswd: 'Client-Pass-7f3a9',
    wrongGuess: 'Guessed-Pass-c21e0',
    upstream: 'Upstream-Pass-99b1d',
    egress: 'Egress-Pass-5e6f2',
    bearer: 'client-bearer-token-d4c8b7a6',
  }
  const up = new FakeUpstream()
  await up.start()
  up.addImage('team/app', 'v1', 'layer-bytes')
  const egress = await startEgress('egress-user', secrets.egress, up.port)
  const dir = join(tmpdir(), `crossdock-htpasswd-${process.pid}-${Date.now()}`)
  await writeFile(dir, `alice:${bcrypt.hashSync(secrets.htpasswd, 4)}\n`)
  const app = await startApp({
    HTPASSWD_FILE: dir,
    AUTH_REGISTRIES: `ghcr.io:robot:${secrets.upstream}`,
    UPSTREAM_PROXY: `http://egress-user:${secrets.egress}@127.0.0.1:${egress.port}`,
    UPSTREAM_CONNECT_TO: `::127.0.0.1:${up.port}`,
    HOSTED_HOSTNAMES: 'registry.internal',
  })
  t.teardown(async () => { await app.stop(); await up.stop(); egress.close(); await rm(dir, { force: true }) })

  const good = basic('alice', secrets.htpasswd)
  const bad = basic('alice', secrets.wrongGuess)
  const reg = async (path: string, authorization?: string, method = 'GET'): Promise<number> =>
    (await raw(app.registryPort, `${method} ${path} HTTP/1.1\r\nHost: x\r\n${authorization !== undefined ? `Authorization: ${authorization}\r\n` : ''}Content-Length: 0\r\nConnection: close\r\n\r\n`)).status
  // The session: logins right and wrong on both doors, a bearer token, pulls through the egress proxy.
  t.equal(await reg('/v2/', good), 200, 'registry door: good login')
  t.equal(await reg('/v2/', bad), 401, 'registry door: wrong password')
  t.equal(await reg('/v2/', `Bearer ${secrets.bearer}`), 401, 'registry door: a bearer token we do not issue')
  t.equal(await reg('/v2/team/new/blobs/uploads/', good, 'POST'), 202, 'registry door: push starts')
  t.equal(await reg('/v2/ghcr.io/team/app/manifests/v1', good), 200, 'registry door: pull-through with AUTH_REGISTRIES, via UPSTREAM_PROXY')
  const wrongConnect = await connectThrough(app.proxyPort, 'ghcr.io:443', { 'proxy-authorization': bad })
  t.equal(wrongConnect.status, 407, 'proxy door: wrong Proxy-Authorization')
  const pulled = await proxiedRequest({ proxyPort: app.proxyPort, ca: app.caPem, host: 'ghcr.io', path: '/v2/team/app/manifests/v1', proxyAuthorization: good, headers: { authorization: `Bearer ${secrets.bearer}` } })
  t.equal(pulled.status, 200, 'proxy door: pull with a client bearer token')
  const hosted = await proxiedRequest({ proxyPort: app.proxyPort, ca: app.caPem, host: 'registry.internal', path: '/v2/', proxyAuthorization: good, headers: { authorization: good } })
  t.equal(hosted.status, 200, 'proxy door: hosted name with inner Authorization')
  t.ok(up.hits.some(h => h.headers.authorization === `Bearer ${secrets.bearer}`), 'the client token did reach the upstream (so it was in flight)')

  const metrics = (await raw(app.proxyPort, 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).text +
    (await raw(app.registryPort, 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).text
  t.match(metrics, /crossdock_requests_total/, 'metrics were scraped')
  const logs = JSON.stringify(app.logs)
  const needles: Array<[string, string]> = []
  for (const [what, s] of Object.entries(secrets)) {
    needles.push([what, s], [`${what} (base64)`, Buffer.from(s).toString('base64')])
  }
  needles.push(['alice:password (base64)', good.slice(6)], ['alice:wrong (base64)', bad.slice(6)],
    ['robot:upstream (base64)', Buffer.from(`robot:${secrets.upstream}`).toString('base64')],
    ['egress Proxy-Authorization (base64)', Buffer.from(`egress-user:${secrets.egress}`).toString('base64')])
  for (const [what, needle] of needles) {
    t.notOk(logs.includes(needle), `logs: no ${what}`)
    t.notOk(metrics.includes(needle), `metrics: no ${what}`)
  }
})

t.test('failed logins are throttled per source address, on both doors', async t => {
  const file = join(tmpdir(), `crossdock-htpasswd-throttle-${process.pid}-${Date.now()}`)
  await writeFile(file, `alice:${bcrypt.hashSync('right', 4)}\n`)
  const app = await startApp({ HTPASSWD_FILE: file, HOSTED_HOSTNAMES: 'registry.internal', UPSTREAM_CONNECT_TO: '::127.0.0.1:1' })
  t.teardown(async () => { await app.stop(); await rm(file, { force: true }) })
  const ping = async (from: string, auth: string): Promise<{ status: number, text: string }> =>
    await raw(app.registryPort, `GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\nConnection: close\r\n\r\n`, from)
  const connect = async (from: string, auth: string): Promise<{ status: number, text: string }> =>
    await raw(app.proxyPort, `CONNECT registry.internal:443 HTTP/1.1\r\nHost: registry.internal:443\r\nProxy-Authorization: ${auth}\r\n\r\n`, from).catch(() => ({ status: 0, text: '' }))

  // Registry door, from 127.0.0.3: ten wrong passwords (the default threshold) block the address.
  for (let i = 0; i < 10; i++) t.equal((await ping('127.0.0.3', basic('alice', `wrong-${i}`))).status, 401, `registry attempt ${i + 1}: 401`)
  const blocked = await ping('127.0.0.3', basic('alice', 'right'))
  t.equal(blocked.status, 429, 'then even the right password gets 429')
  t.match(blocked.text, /retry-after: \d+/i, 'with Retry-After')
  t.match(blocked.text, /TOOMANYREQUESTS/, 'and the OCI code')
  t.equal((await connect('127.0.0.3', basic('alice', 'right'))).status, 407, 'the block covers the proxy door too (one throttle per address)')
  t.equal((await ping('127.0.0.4', basic('alice', 'right'))).status, 200, 'another address is not blocked')

  // Proxy door, from 127.0.0.5: ten wrong Proxy-Authorization headers.
  for (let i = 0; i < 10; i++) t.equal((await connect('127.0.0.5', basic('alice', `wrong-${i}`))).status, 407, `CONNECT attempt ${i + 1}: 407`)
  const refused = await connect('127.0.0.5', basic('alice', 'right'))
  t.equal(refused.status, 407, 'then the right password is refused')
  t.match(refused.text, /too many failed logins/, 'saying why')
  t.equal((await ping('127.0.0.5', basic('alice', 'right'))).status, 429, 'and the registry door refuses that address too')
  const ok = await connectThrough(app.proxyPort, 'registry.internal:443', { 'proxy-authorization': basic('alice', 'right') })
  ok.socket.destroy()
  t.equal(ok.status, 200, '127.0.0.1 still gets in')
  t.ok(app.logs.some(l => l.msg === 'too many failed logins; address blocked' && l.remote === '127.0.0.5'), 'the block is logged with the address')
})
