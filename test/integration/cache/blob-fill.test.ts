// Blob misses through a real CONNECT + TLS client: a herd joins one download, a client leaving
// does not stop it, and a bad upstream body is never committed nor ended cleanly.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { sha256 } from '../../helpers/fake-upstream.js'
import { startHarness, streamThrough, readBody, fetchThrough, type Harness, startWithUpstream } from './harness.js'
import { parseDigest } from '../../../src/oci/digest.js'

const HUB = 'registry-1.docker.io'

const startBoth = startWithUpstream

/** An upstream answer sent in two parts: `head` bytes, then (once `release` is called) the rest. */
function gated (): { release: () => void, send: (res: ServerResponse, data: Buffer, head: number, finish?: (res: ServerResponse, rest: Buffer) => void) => Promise<void> } {
  let release: () => void = () => {}
  const gate = new Promise<void>(resolve => { release = resolve })
  return {
    release,
    send: async (res, data, head, finish) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length })
      res.write(data.subarray(0, head))
      await gate
      if (finish !== undefined) finish(res, data.subarray(head))
      else res.end(data.subarray(head))
    },
  }
}

async function firstChunk (s: { res: IncomingMessage }): Promise<Buffer> {
  return await new Promise((resolve, reject) => {
    s.res.once('data', (c: Buffer) => { s.res.pause(); resolve(c) })
    s.res.once('error', reject)
  })
}

async function logLines (h: Harness, n: number): Promise<Array<Record<string, any>>> {
  const lines = (): Array<Record<string, any>> => h.logs.filter(l => l.msg === 'request' && typeof l.path === 'string' && l.path.includes('/blobs/'))
  while (lines().length < n) await new Promise(resolve => setTimeout(resolve, 5))
  return lines()
}

t.test('2. eight clients, one upstream GET, bytes flow to all before the download ends', async t => {
  const { up, h } = await startBoth(t)
  const data = randomBytes(16 << 20)
  const d = up.addBlob(data)
  const g = gated()
  up.fault = async (req, res, hit) => {
    if (hit.method === 'GET' && hit.path.endsWith(d)) { await g.send(res, data, 4 << 20); return true }
    return false
  }
  const clients = await Promise.all(Array.from({ length: 8 }, async () => await streamThrough(h, HUB, `/v2/library/big/blobs/${d}`)))
  const firsts = await Promise.all(clients.map(firstChunk))
  t.ok(firsts.every(c => c.length > 0), 'every client got bytes while the upstream still holds back 12 MiB')
  t.equal(h.cache.blobs.inflight(parseDigest(d))?.state, 'filling', 'the download is still running')
  g.release()
  const bodies = await Promise.all(clients.map(async (c, i) => { c.res.unshift(firsts[i]); c.res.resume(); return await readBody(c) }))
  t.ok(bodies.every(b => b.complete && b.status === 200), 'all complete')
  t.same(bodies.map(b => sha256(b.body)), Array(8).fill(d), 'all eight bodies hash to the digest')
  t.equal(up.count('GET', `/blobs/${d}`), 1, 'exactly one upstream GET')
  const statuses = (await logLines(h, 8)).map(l => l.cacheStatus).sort()
  t.same(statuses, ['JOINED', 'JOINED', 'JOINED', 'JOINED', 'JOINED', 'JOINED', 'JOINED', 'MISS'], 'the log marks the followers JOINED')
})

t.test('3. a client that disconnects mid-blob does not stop the fill; the next request is a HIT', async t => {
  const { up, h } = await startBoth(t)
  const data = randomBytes(8 << 20)
  const d = up.addBlob(data)
  const g = gated()
  up.fault = async (req, res, hit) => {
    if (hit.method === 'GET' && hit.path.endsWith(d)) { await g.send(res, data, 1 << 20); return true }
    return false
  }
  const c = await streamThrough(h, HUB, `/v2/library/gone/blobs/${d}`)
  await firstChunk(c)
  const fill = h.cache.blobs.inflight(parseDigest(d))
  t.ok(fill)
  c.socket.destroy()
  await new Promise(resolve => c.socket.once('close', resolve))
  g.release()
  await fill!.done
  const again = await fetchThrough(h, HUB, `/v2/library/gone/blobs/${d}`)
  t.equal(again.headers['x-cache-status'], 'HIT')
  t.equal(sha256(again.body), d)
  t.equal(up.count('GET', `/blobs/${d}`), 1)
})

const faults: Array<[string, (res: ServerResponse, rest: Buffer, data: Buffer) => void]> = [
  ['a body whose digest does not match', (res, rest) => { const bad = Buffer.from(rest); bad[bad.length - 1] ^= 0xff; res.end(bad) }],
  ['a truncated body (upstream closes early)', (res, rest) => { res.shouldKeepAlive = false; res.write(rest.subarray(0, rest.length - 1000)); res.socket?.end() }],
  ['a connection that dies mid-stream', res => { res.socket?.destroy() }],
]

for (const [name, finish] of faults) {
  t.test(`4. ${name}: clients aborted, nothing committed, the next request goes upstream again`, async t => {
    const { up, h } = await startBoth(t)
    const data = randomBytes(2 << 20)
    const d = up.addBlob(data)
    let broken = true
    up.fault = async (req, res, hit) => {
      if (!broken || hit.method !== 'GET' || !hit.path.endsWith(d)) return false
      const g = gated()
      g.release()
      await g.send(res, data, 1 << 20, (r, rest) => finish(r, rest, data))
      return true
    }
    const clients = await Promise.all([0, 1, 2].map(async () => await fetchThrough(h, HUB, `/v2/library/bad/blobs/${d}`)))
    for (const c of clients) {
      t.equal(c.complete, false, 'connection aborted, no clean end')
      t.ok(c.body.length < data.length, 'never the whole body')
    }
    t.equal(h.cache.blobs.stat(parseDigest(d)), undefined, 'nothing committed')
    t.equal(up.count('GET', `/blobs/${d}`), 1)
    broken = false
    const good = await fetchThrough(h, HUB, `/v2/library/bad/blobs/${d}`)
    t.equal(good.headers['x-cache-status'], 'MISS', 'the next request went upstream again')
    t.equal(sha256(good.body), d)
    t.equal(up.count('GET', `/blobs/${d}`), 2)
  })
}
