/**
 * Issue 14, finding 1: with the default configuration a raw CONNECT tunnel reached the proxy host's
 * own loopback, cloud metadata, and numeric spellings of them. Now every spelling of a refused
 * address is a 403 with one line of reason, a warn line and a metric, and nothing is dialled: the
 * far end is a counting TCP sink listening on `::` (dual stack), so it would see a connection to
 * 127.0.0.1, 127.0.0.5, ::1, 0.0.0.0 or :: alike. TUNNEL_ALLOW and UPSTREAM_CONNECT_TO open what
 * the operator means, crossdock's own sockets never.
 */
import t from 'tap'
import net from 'node:net'
import { startApp } from '../../helpers/start-app.js'
import { connectThrough } from '../../helpers/proxy-client.js'

interface Sink { port: number, connections: () => number, close: () => void }

/** Counts connections and echoes; listens on every local address. */
async function startSink (): Promise<Sink> {
  let n = 0
  const server = net.createServer(s => { n++; s.on('error', () => {}); s.pipe(s) })
  await new Promise<void>(resolve => server.listen(0, '::', resolve))
  return { port: (server.address() as net.AddressInfo).port, connections: () => n, close: () => { server.close() } }
}

async function freePort (): Promise<number> {
  const s = net.createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as net.AddressInfo).port
  await new Promise<void>(resolve => s.close(() => resolve()))
  return port
}

async function scrape (port: number): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`)
  return await r.text()
}

t.test('default policy: loopback, link-local, unspecified and multicast are refused in every spelling', async t => {
  const sink = await startSink()
  const app = await startApp({ CONNECT_ALLOWED_PORTS: `443 ${sink.port}` })
  t.teardown(async () => { await app.stop(); sink.close() })
  const p = sink.port
  const refused: Array<[string, string]> = [
    [`127.0.0.1:${p}`, 'loopback'], [`0x7f000001:${p}`, 'loopback'], [`127.000.000.001:${p}`, 'loopback'], [`2130706433:${p}`, 'loopback'],
    [`127.1:${p}`, 'loopback'], [`0177.0.0.1:${p}`, 'loopback'], [`127.0.0.5:${p}`, 'loopback'], ['127.0.0.1:0443', 'loopback'],
    [`[::1]:${p}`, 'loopback'], [`[::ffff:127.0.0.1]:${p}`, 'loopback'], [`[::ffff:7f00:1]:${p}`, 'loopback'], [`[0:0:0:0:0:ffff:7f00:1]:${p}`, 'loopback'],
    [`localhost:${p}`, 'loopback'], [`LOCALHOST.:${p}`, 'loopback'],
    [`0.0.0.0:${p}`, 'unspecified'], [`0:${p}`, 'unspecified'], [`[::]:${p}`, 'unspecified'],
    ['169.254.169.254:443', 'link-local'], ['0xa9fea9fe:443', 'link-local'], ['[::ffff:169.254.169.254]:443', 'link-local'], ['[fe80::1]:443', 'link-local'],
    ['224.0.0.1:443', 'multicast'], ['[ff02::1]:443', 'multicast'],
  ]
  for (const [authority, reason] of refused) {
    const r = await connectThrough(app.proxyPort, authority)
    r.socket.destroy()
    t.equal(r.status, 403, `${authority}: 403`)
    t.match(r.body, /^crossdock refuses to connect to \S+( \(\S+\))?: [^\n]+\n$/, `${authority}: one line of reason`)
    t.ok(app.logs.some(l => l.msg === 'destination refused' && l.reason === reason && l.purpose === 'tunnel' && l.level === 40), `${authority}: a warn line (${reason})`)
  }
  t.equal(sink.connections(), 0, 'nothing was dialled')
  const metrics = await scrape(app.proxyPort)
  t.match(metrics, new RegExp(`crossdock_destination_refused_total\\{reason="loopback",purpose="tunnel"\\} ${refused.filter(r => r[1] === 'loopback').length}\\n`))
  t.match(metrics, /crossdock_destination_refused_total\{reason="link-local",purpose="tunnel"\} 4\n/)
  t.match(metrics, /crossdock_tunnels_open 0\n/, 'no tunnel left counted')
})

t.test('TUNNEL_ALLOW: only what it names; a CIDR in it opens loopback, but never crossdock itself', async t => {
  const sink = await startSink()
  const proxyPort = await freePort()
  const app = await startApp({
    PROXY_PORT: String(proxyPort),
    CONNECT_ALLOWED_PORTS: `443 ${sink.port} ${proxyPort}`,
    TUNNEL_ALLOW: '*.allowed.test 127.0.0.0/8',
    UPSTREAM_CONNECT_TO: `a.allowed.test:443:127.0.0.1:${sink.port},other.test:443:127.0.0.1:${sink.port}`,
  })
  t.teardown(async () => { await app.stop(); sink.close() })

  const ok = await connectThrough(app.proxyPort, `127.0.0.1:${sink.port}`)
  t.equal(ok.status, 200, 'an address inside an allowed CIDR is tunnelled')
  ok.socket.write('ping')
  t.equal(String(await new Promise(resolve => ok.socket.once('data', resolve))), 'ping', 'bytes flow both ways')
  ok.socket.destroy()
  const named = await connectThrough(app.proxyPort, 'a.allowed.test:443')
  named.socket.destroy()
  t.equal(named.status, 200, 'a name matching a glob (mapped by the operator)')
  t.equal(sink.connections(), 2)

  for (const [authority, why] of [['other.test:443', /not in TUNNEL_ALLOW/], [`[::1]:${sink.port}`, /loopback/], [`127.0.0.1:${proxyPort}`, /crossdock itself/], [`0x7f000001:${proxyPort}`, /crossdock itself/]] as const) {
    const r = await connectThrough(app.proxyPort, authority)
    r.socket.destroy()
    t.equal(r.status, 403, `${authority}: 403`)
    t.match(r.body, why, `${authority}: says why`)
  }
  t.equal(sink.connections(), 2, 'nothing else was dialled')
  t.equal(app.app.addresses().proxy, `127.0.0.1:${proxyPort}`, 'the own-address case really was our port')
})

t.test('TUNNEL_DENY adds names and ranges; private ranges stay allowed by default', async t => {
  const sink = await startSink()
  const app = await startApp({
    TUNNEL_DENY: '*.blocked.test 10.0.0.0/8',
    UPSTREAM_CONNECT_TO: `x.blocked.test:443:127.0.0.1:${sink.port},fine.test:443:127.0.0.1:${sink.port}`,
  })
  t.teardown(async () => { await app.stop(); sink.close() })
  const denied = await connectThrough(app.proxyPort, 'x.blocked.test:443')
  denied.socket.destroy()
  t.equal(denied.status, 403)
  t.match(denied.body, /TUNNEL_DENY/)
  const range = await connectThrough(app.proxyPort, '012.1.2.3:443')
  range.socket.destroy()
  t.equal(range.status, 403, 'octal 012 is 10: inside TUNNEL_DENY')
  const fine = await connectThrough(app.proxyPort, 'fine.test:443')
  fine.socket.destroy()
  t.equal(fine.status, 200)
  t.equal(sink.connections(), 1, 'only the allowed tunnel was dialled')
  t.match(await scrape(app.proxyPort), /crossdock_destination_refused_total\{reason="denied",purpose="tunnel"\} 2\n/)
})
