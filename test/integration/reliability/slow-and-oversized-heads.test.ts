/**
 * Clients that never finish their request head (slow loris) or send one far too large, on every
 * door: the registry port, the proxy port itself, and a MITM session inside a CONNECT (hosted name
 * and upstream name), plus a CONNECT whose client never starts TLS. Each gets the right 4xx (408
 * or 431) and its socket closed, within CLIENT_HEADER_TIMEOUT; the app keeps answering.
 */
import t from 'tap'
import net from 'node:net'
import tls from 'node:tls'
import { startApp } from '../../helpers/start-app.js'
import { connectThrough } from '../../helpers/proxy-client.js'
import { FakeUpstream } from '../../helpers/fake-upstream.js'

const HEADER_TIMEOUT_MS = 1000
// Far above CLIENT_HEADER_TIMEOUT plus the head check interval (250 ms here): only a door that
// does not enforce the timeout at all (or checks it every 30 s, Node's default) can reach it.
const GIVE_UP_MS = 15_000

const up = new FakeUpstream()
await up.start()
const app = await startApp({
  CLIENT_HEADER_TIMEOUT: `${HEADER_TIMEOUT_MS}ms`,
  HOSTED_HOSTNAMES: 'registry.internal',
  REGISTRIES: 'ghcr.io',
  // Every dial, whatever the name, goes to the fake upstream on loopback.
  UPSTREAM_CONNECT_TO: `::127.0.0.1:${up.port}`,
})
t.teardown(async () => { await app.stop(); await up.stop() })

type Door = 'registry' | 'proxy' | 'mitm-hosted' | 'mitm-upstream'
const DOORS: Door[] = ['registry', 'proxy', 'mitm-hosted', 'mitm-upstream']

async function open (door: Door): Promise<net.Socket> {
  if (door === 'registry' || door === 'proxy') {
    const s = net.connect(door === 'registry' ? app.registryPort : app.proxyPort, '127.0.0.1')
    await new Promise((resolve, reject) => s.once('connect', resolve).once('error', reject))
    return s
  }
  const host = door === 'mitm-hosted' ? 'registry.internal' : 'ghcr.io'
  const tunnel = await connectThrough(app.proxyPort, `${host}:443`)
  const s = tls.connect({ socket: tunnel.socket, servername: host, ca: app.caPem })
  await new Promise((resolve, reject) => s.once('secureConnect', resolve).once('error', reject))
  return s
}

/** Everything the server sent until it closed the socket; rejects if it stays open past GIVE_UP_MS. */
async function untilClosed (s: net.Socket): Promise<string> {
  let got = ''
  s.on('data', (d: Buffer) => { got += d.toString('latin1') })
  s.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`socket still open after ${GIVE_UP_MS} ms`)) }, GIVE_UP_MS)
    s.once('close', () => { clearTimeout(timer); resolve() })
  })
  return got
}

/**
 * Writes `text` one byte every 100 ms until the socket closes (bounded by the text's length): each
 * byte resets any idle timer, so only a deadline on the whole head can stop it.
 */
function dribble (s: net.Socket, text: string): void {
  let i = 0
  const timer = setInterval(() => {
    if (s.destroyed || i >= text.length) { clearInterval(timer); return }
    s.write(text[i++])
  }, 100)
  s.once('close', () => clearInterval(timer))
}
const SLOW_HEAD = `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ${'a'.repeat(GIVE_UP_MS / 100)}`

const statusLine = (raw: string): string => raw.split('\r\n')[0]

async function healthy (): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${app.registryPort}/healthz`)
  await r.arrayBuffer()
  return r.status
}

t.test('slow loris: a head that never ends gets 408 and a closed socket on every door', async t => {
  for (const door of DOORS) {
    // 20 at once per door, each sending its head a byte at a time, forever.
    const sockets = await Promise.all(Array.from({ length: 20 }, async () => await open(door)))
    const answers = sockets.map(async s => { dribble(s, SLOW_HEAD); return await untilClosed(s) })
    t.equal(await healthy(), 200, `${door}: the app answers others meanwhile`)
    const lines = (await Promise.all(answers)).map(statusLine)
    t.same([...new Set(lines)], ['HTTP/1.1 408 Request Timeout'], `${door}: 408 for each of 20`)
  }
})

t.test('slow loris on a kept-alive MITM session: the next head has a deadline too', async t => {
  // Its own app: the deadline of a second head is KEEPALIVE_TIMEOUT + CLIENT_HEADER_TIMEOUT.
  const quick = await startApp({ CLIENT_HEADER_TIMEOUT: `${HEADER_TIMEOUT_MS}ms`, KEEPALIVE_TIMEOUT: '1s', HOSTED_HOSTNAMES: 'registry.internal', UPSTREAM_CONNECT_TO: `::127.0.0.1:${up.port}` })
  t.teardown(async () => { await quick.stop() })
  const tunnel = await connectThrough(quick.proxyPort, 'registry.internal:443')
  const s = tls.connect({ socket: tunnel.socket, servername: 'registry.internal', ca: quick.caPem })
  await new Promise((resolve, reject) => s.once('secureConnect', resolve).once('error', reject))
  s.write('GET /v2/ HTTP/1.1\r\nHost: registry.internal\r\n\r\n')
  s.once('data', () => dribble(s, SLOW_HEAD))
  const raw = await untilClosed(s)
  t.match(raw, /^HTTP\/1\.1 \d{3} /, 'the first request was answered')
  t.match(raw, /HTTP\/1\.1 408 Request Timeout\r\n/, 'the unfinished second one timed out')
})

t.test('a CONNECT to an intercepted host whose client never starts TLS is closed', async t => {
  const tunnel = await connectThrough(app.proxyPort, 'registry.internal:443')
  t.equal(tunnel.status, 200)
  t.equal(await untilClosed(tunnel.socket), '', 'closed without a byte (no TLS, so no HTTP answer possible)')
})

t.test('a client that connects and sends nothing is closed', async t => {
  for (const door of ['registry', 'proxy'] as const) {
    const raw = await untilClosed(await open(door))
    t.ok(raw === '' || statusLine(raw) === 'HTTP/1.1 408 Request Timeout', `${door}: ${JSON.stringify(statusLine(raw))}`)
  }
})

t.test('oversized heads get 431 on every door', async t => {
  const big = 'a'.repeat(64 * 1024)
  const heads = {
    'one 64 KiB header': `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: ${big}\r\n\r\n`,
    'a 64 KiB URL': `GET /v2/${big}/manifests/latest HTTP/1.1\r\nHost: x\r\n\r\n`,
    '10,000 small headers': `GET /v2/ HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 10_000 }, (_, i) => `x-${i}: y\r\n`).join('')}\r\n`,
  }
  for (const door of DOORS) {
    for (const [what, head] of Object.entries(heads)) {
      const s = await open(door)
      s.write(head)
      t.equal(statusLine(await untilClosed(s)), 'HTTP/1.1 431 Request Header Fields Too Large', `${door}: ${what}`)
    }
  }
  t.equal(await healthy(), 200, 'still answering')
})

t.test('garbage instead of HTTP gets 400 on every door', async t => {
  for (const door of DOORS) {
    for (const junk of ['\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n', 'GET\r\n\r\n', 'GET / HTTP/9.9\r\n\r\n', 'G\0T / HTTP/1.1\r\n\r\n', 'GET / HTTP/1.1\r\nHost x\r\n\r\n']) {
      const s = await open(door)
      s.write(Buffer.from(junk, 'latin1'))
      t.equal(statusLine(await untilClosed(s)), 'HTTP/1.1 400 Bad Request', `${door}: ${JSON.stringify(junk.slice(0, 20))}`)
    }
  }
})
