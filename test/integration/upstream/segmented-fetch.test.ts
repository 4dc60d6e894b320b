// Segmented blob downloads through the real app (proxy door, real CONNECT + TLS client) against the
// counting fake upstream: the GETs per blob, the ranges asked, credentials, a CDN redirect, an
// upstream that ignores Range, and pieces that come back wrong (never a complete wrong body).
// Most run with UPSTREAM_SEGMENT_RATE=0 (always segment); the rule's own tests come last.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { fetchThrough, startWithUpstream } from '../cache/harness.js'
import type { Hit } from '../../helpers/fake-upstream.js'
import { sample } from '../../helpers/metrics-text.js'

const HUB = 'registry-1.docker.io'
const SEGMENTED = { UPSTREAM_SEGMENTS: '4', UPSTREAM_SEGMENT_MIN_SIZE: '64k', UPSTREAM_SEGMENT_RATE: '0' }
const SIZE = 1 << 20
/** The first request asks for UPSTREAM_SEGMENT_MIN_SIZE bytes; the rest goes in K-1 = 3 pieces. */
const FIRST = 64 << 10
const PIECE = (SIZE - FIRST) / 3

const blobGets = (hits: Hit[], digest: string): Hit[] => hits.filter(h => h.method === 'GET' && h.path.includes(digest))

t.test('a large blob: one GET per segment, in ranges, each with the client\'s credentials; then a HIT', async t => {
  const { up, h } = await startWithUpstream(t, SEGMENTED)
  up.ranges = true
  const data = randomBytes(SIZE)
  const d = up.addBlob(data)
  const r = await fetchThrough(h, HUB, `/v2/library/big/blobs/${d}`, { headers: { authorization: 'Bearer client' } })
  t.equal(r.status, 200)
  t.equal(r.headers['content-length'], String(SIZE))
  t.equal(r.headers['content-range'], undefined, 'the client asked for the whole blob and gets a 200')
  t.ok(r.complete && r.body.equals(data), 'byte-exact')
  const gets = blobGets(up.hits, d)
  t.same(gets.map(g => g.headers.range).sort(), [`bytes=0-${FIRST - 1}`, ...[0, 1, 2].map(i => `bytes=${FIRST + i * PIECE}-${FIRST + (i + 1) * PIECE - 1}`)].sort())
  t.ok(gets.every(g => g.headers.authorization === 'Bearer client'), 'every piece with the client\'s Authorization')
  const again = await fetchThrough(h, HUB, `/v2/library/big/blobs/${d}`, { headers: { authorization: 'Bearer client' } })
  t.equal(again.headers['x-cache-status'], 'HIT')
  t.ok(again.body.equals(data))
  t.equal(blobGets(up.hits, d).length, 4, 'cached: nothing more upstream')
})

t.test('below UPSTREAM_SEGMENT_MIN_SIZE, or with UPSTREAM_SEGMENTS=1: one GET', async t => {
  const { up, h } = await startWithUpstream(t, SEGMENTED)
  up.ranges = true
  const small = randomBytes(60_000)
  const d = up.addBlob(small)
  const r = await fetchThrough(h, HUB, `/v2/library/small/blobs/${d}`)
  t.ok(r.complete && r.body.equals(small))
  t.equal(blobGets(up.hits, d).length, 1)

  const off = await startWithUpstream(t, { UPSTREAM_SEGMENTS: '1' })
  off.up.ranges = true
  const data = randomBytes(SIZE)
  const d2 = off.up.addBlob(data)
  const r2 = await fetchThrough(off.h, HUB, `/v2/library/big/blobs/${d2}`)
  t.ok(r2.complete && r2.body.equals(data))
  t.same(blobGets(off.up.hits, d2).map(g => g.headers.range), [undefined], 'no Range sent at all')
})

t.test('an upstream that answers Range with 200: the one stream, one GET', async t => {
  const { up, h } = await startWithUpstream(t, SEGMENTED)
  up.ranges = false
  const data = randomBytes(SIZE)
  const d = up.addBlob(data)
  const r = await fetchThrough(h, HUB, `/v2/library/big/blobs/${d}`)
  t.equal(r.status, 200)
  t.ok(r.complete && r.body.equals(data))
  t.equal(blobGets(up.hits, d).length, 1)
})

t.test('a CDN redirect is followed once; the pieces go to the CDN URL, without Authorization', async t => {
  const { up, h } = await startWithUpstream(t, SEGMENTED, { hosts: [HUB, 'cdn.test'] })
  up.ranges = true
  up.cdnOrigin = 'https://cdn.test'
  const data = randomBytes(SIZE)
  const d = up.addBlob(data)
  const r = await fetchThrough(h, HUB, `/v2/library/big/blobs/${d}`, { headers: { authorization: 'Bearer client' } })
  t.ok(r.complete && r.body.equals(data), 'byte-exact')
  const gets = blobGets(up.hits, d)
  t.equal(gets.filter(g => g.host === HUB).length, 1, 'the registry is asked once')
  const cdn = gets.filter(g => g.host === 'cdn.test')
  t.equal(cdn.length, 4, 'the first answer and three pieces from the CDN')
  t.ok(cdn.every(g => g.path === `/cdn/${d}?sig=abc` && g.headers.authorization === undefined), 'the signed URL, Authorization stays home')
})

/** A fault answering piece requests (not the first, bytes=0-) with `answer`. */
function pieceFault (digest: string, answer: (res: ServerResponse, start: number, end: number) => void): (req: IncomingMessage, res: ServerResponse, hit: Hit) => boolean {
  return (req, res, hit) => {
    const m = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range))
    if (!hit.path.includes(digest) || m === null || m[1] === '0') return false
    // (the first request, bytes=0-…, is answered by the fake itself)
    answer(res, Number(m[1]), Number(m[2]))
    return true
  }
}

t.test('pieces that come back wrong: the client never gets a complete body, nothing is cached', async t => {
  const data = randomBytes(SIZE)
  // [name, answer, whether the bytes are wrong in a way only the digest shows]
  const cases: Array<[string, (res: ServerResponse, start: number, end: number) => void, boolean?]> = [
    ['a 206 with another Content-Range', (res, start, end) => {
      res.writeHead(206, { 'content-range': `bytes ${start + 1}-${end + 1}/${SIZE}`, 'content-length': end - start + 1 })
      res.end(data.subarray(start + 1, end + 2))
    }],
    ['the right Content-Range, the wrong bytes', (res, start, end) => {
      res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${SIZE}`, 'content-length': end - start + 1 })
      res.end(randomBytes(end - start + 1))
    }, true],
    ['a 404 to the range', (res) => {
      res.writeHead(404, { 'content-length': 0 })
      res.end()
    }],
    ['resets, every time', (res) => { res.socket?.destroy() }],
  ]
  for (const [name, answer, onlyTheDigestTells] of cases) {
    await t.test(name, async t => {
      const { up, h } = await startWithUpstream(t, SEGMENTED)
      up.ranges = true
      const d = up.addBlob(data)
      up.fault = pieceFault(d, answer)
      const r = await fetchThrough(h, HUB, `/v2/library/big/blobs/${d}`)
      t.notOk(r.status === 200 && r.complete, `not a clean 200 (status ${r.status}, complete ${r.complete})`)
      // Bytes that only the digest shows wrong reach clients tailing the fill until its end, then
      // the abort: as for a single stream (blob-fill.ts). Everything else stops at the bad piece.
      if (r.status === 200 && onlyTheDigestTells !== true) t.ok(r.body.equals(data.subarray(0, r.body.length)), `only right bytes before the abort (${r.body.length})`)
      up.fault = undefined
      const again = await fetchThrough(h, HUB, `/v2/library/big/blobs/${d}`)
      t.equal(again.headers['x-cache-status'], 'MISS', 'nothing was cached')
      t.ok(again.complete && again.body.equals(data), 'the next fetch is right')
    })
  }
})

t.test('a piece reset once is asked again for its missing bytes', async t => {
  const { up, h } = await startWithUpstream(t, SEGMENTED)
  up.ranges = true
  const data = randomBytes(SIZE)
  const d = up.addBlob(data)
  let reset = false
  up.fault = (req, res, hit) => {
    if (reset || !hit.path.includes(d) || req.headers.range !== `bytes=${FIRST}-${FIRST + PIECE - 1}`) return false
    reset = true
    res.writeHead(206, { 'content-range': `bytes ${FIRST}-${FIRST + PIECE - 1}/${SIZE}`, 'content-length': PIECE })
    res.write(data.subarray(FIRST, FIRST + 1000), () => { res.socket?.destroy() })
    return true
  }
  const r = await fetchThrough(h, HUB, `/v2/library/big/blobs/${d}`)
  t.ok(r.complete && r.body.equals(data), 'byte-exact')
  t.ok(reset, 'the fault ran')
  const ranges = blobGets(up.hits, d).map(g => g.headers.range)
  const again = ranges.filter(x => x !== undefined && /^bytes=\d+-/.test(x)).map(x => Number(x!.slice(6).split('-')[0])).filter(start => start > FIRST && start <= FIRST + 1000)
  t.equal(again.length, 1, `the rest of the piece asked again (${ranges.join(', ')})`)
})

// The rule (segment-rule.ts) on real sockets: thresholds far from what the connection does, so the
// decision cannot flip with the machine's load.
t.test('UPSTREAM_SEGMENT_RATE: a first connection above it gets the rest as one range: 2 GETs', async t => {
  const { up, h } = await startWithUpstream(t, { UPSTREAM_SEGMENTS: '4', UPSTREAM_SEGMENT_MIN_SIZE: '1m', UPSTREAM_SEGMENT_RATE: '64k' })
  up.ranges = true
  const size = 4 << 20
  const data = randomBytes(size)
  const d = up.addBlob(data)
  const r = await fetchThrough(h, HUB, `/v2/library/big/blobs/${d}`, { headers: { authorization: 'Bearer client' } })
  t.equal(r.status, 200)
  t.ok(r.complete && r.body.equals(data), 'byte-exact')
  const gets = blobGets(up.hits, d)
  t.same(gets.map(g => g.headers.range), ['bytes=0-1048575', `bytes=1048576-${size - 1}`], 'the first piece, then the rest in one range')
  t.ok(gets.every(g => g.headers.authorization === 'Bearer client'), 'both with the client\'s Authorization')
  t.equal(await decisions(h.proxyPort, 'single'), 1, 'counted as single')
  t.equal(await decisions(h.proxyPort, 'segmented'), undefined)
})

async function decisions (port: number, decision: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  return sample(text, 'crossdock_upstream_segment_decisions_total', { decision })
}

t.test('UPSTREAM_SEGMENT_RATE: a first connection below it gets K-1 segments', async t => {
  const { up, h } = await startWithUpstream(t, { UPSTREAM_SEGMENTS: '4', UPSTREAM_SEGMENT_MIN_SIZE: '1m', UPSTREAM_SEGMENT_RATE: '1t' })
  up.ranges = true
  // Paced 64 KiB slices: the first answer takes time, so its rate is measured (not "all at once").
  up.throttle = 16 << 20
  const size = 4 << 20
  const data = randomBytes(size)
  const d = up.addBlob(data)
  const r = await fetchThrough(h, HUB, `/v2/library/big/blobs/${d}`)
  t.ok(r.complete && r.body.equals(data), 'byte-exact')
  const gets = blobGets(up.hits, d)
  t.same(gets.map(g => g.headers.range).sort(), ['bytes=0-1048575', 'bytes=1048576-2097151', 'bytes=2097152-3145727', 'bytes=3145728-4194303'], 'three pieces of 1 MiB')
  t.equal(await decisions(h.proxyPort, 'segmented'), 1, 'counted as segmented')
})
