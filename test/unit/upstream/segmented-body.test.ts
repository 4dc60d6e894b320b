// SegmentedBody and requestBlob against in-memory range sources: byte-exact bodies across piece
// boundaries (property-based: sizes, piece sizes, K, slots, chunking, one failing piece), the bytes
// held ahead of a slow reader, slots always given back, and what each upstream answer leads to.
import t from 'tap'
import fc from 'fast-check'
import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { SegmentedBody, requestBlob, type RangeFetch } from '../../../src/upstream/segmented-body.js'
import { SegmentSlots } from '../../../src/upstream/segment-slots.js'
import type { UpstreamRequest, UpstreamResponse } from '../../../src/upstream/upstream-client.js'
import { answer, readAll, settled, sources, type Fault } from '../../helpers/range-sources.js'

t.test('the body is the blob, byte for byte, whatever the sizes, K, slots and chunking', async t => {
  await fc.assert(fc.asyncProperty(
    fc.integer({ min: 1, max: 60_000 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 6 }),
    fc.integer({ min: 1, max: 8 }), fc.integer({ min: 256, max: 20_000 }), fc.double({ min: 0, max: 1, noNaN: true }),
    async (size, nPieces, segments, nSlots, chunk, firstShare) => {
      const firstSize = Math.max(1, Math.floor(size * firstShare))
      // A piece size giving at most `nPieces` pieces (1-byte pieces of a large blob only test patience).
      const maxPiece = Math.ceil(size / nPieces)
      const data = randomBytes(size)
      const src = sources(data, chunk, firstSize)
      const slots = new SegmentSlots(nSlots)
      const body = new SegmentedBody({ first: src.first, firstSize, size, segments, slots, maxPiece, fetchRange: src.fetchRange })
      const { bytes, error } = await readAll(body)
      if (error !== undefined) throw error
      if (!bytes.equals(data)) throw new Error(`body differs (size ${size}, piece ${maxPiece}, K ${segments})`)
      // Every range asked once, within the blob, none overlapping another.
      const sorted = [...src.asked].sort((a, b) => a[0] - b[0])
      for (let i = 0; i < sorted.length; i++) {
        if (sorted[i][1] >= size || (i > 0 && sorted[i][0] <= sorted[i - 1][1])) throw new Error(`overlapping or out-of-blob ranges ${JSON.stringify(sorted)}`)
      }
      if (sorted[0] !== undefined && sorted[0][0] !== firstSize) throw new Error(`the first range starts at ${sorted[0][0]}, not ${firstSize}`)
      const pieces = firstSize >= size ? 0 : Math.ceil((size - firstSize) / Math.min(maxPiece, Math.ceil((size - firstSize) / Math.max(1, segments - 1))))
      if (src.asked.length !== pieces) throw new Error(`${src.asked.length} range requests for ${pieces} pieces`)
      await settled(slots)
      if (slots.inUse !== 0) throw new Error(`${slots.inUse} slots kept`)
    }), { numRuns: 100 })
})

t.test('one failing piece: retried into the exact body, or the body fails; never a wrong byte', async t => {
  const faults: Fault[] = ['reset', 'status-500', 'status-200', 'wrong-range', 'short', 'extra-byte']
  await fc.assert(fc.asyncProperty(
    fc.integer({ min: 2_000, max: 60_000 }), fc.integer({ min: 2, max: 5 }), fc.integer({ min: 0, max: 4 }),
    fc.constantFrom(...faults), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 512, max: 20_000 }),
    async (size, segments, index, fault, times, chunk) => {
      const data = randomBytes(size)
      const firstSize = Math.ceil(size / 7)
      const src = sources(data, chunk, firstSize, { index, fault, times })
      const slots = new SegmentSlots(4)
      const body = new SegmentedBody({ first: src.first, firstSize, size, segments, slots, maxPiece: Math.ceil(size / 5), fetchRange: src.fetchRange })
      const { bytes, error } = await readAll(body)
      if (!bytes.equals(data.subarray(0, bytes.length))) throw new Error(`a wrong byte reached the reader (${fault})`)
      const pieceFailed = src.pieces() > index
      const retryable = fault === 'reset' || fault === 'status-500' || fault === 'short'
      if (!pieceFailed || (retryable && times < 3)) {
        if (error !== undefined) throw new Error(`failed although retries cover ${times} × ${fault}: ${error.message}`)
        if (!bytes.equals(data)) throw new Error('incomplete body without an error')
      } else if (error === undefined) {
        throw new Error(`${times} × ${fault} did not fail the body`)
      }
      await settled(slots)
      if (slots.inUse !== 0) throw new Error(`${slots.inUse} slots kept after ${fault}`)
    }), { numRuns: 150 })
})

t.test('a slow reader: bytes fetched ahead stay within K pieces', async t => {
  const size = 2_000_000
  const data = randomBytes(size)
  for (const segments of [2, 4]) {
    const piece = 100_000
    const src = sources(data, 16_384, piece)
    const body = new SegmentedBody({ first: src.first, firstSize: piece, size, segments, slots: new SegmentSlots(16), maxPiece: piece, fetchRange: src.fetchRange })
    let ahead = 0
    const { bytes } = await readAll(body, 5, consumed => { ahead = Math.max(ahead, src.delivered() - consumed) })
    t.ok(bytes.equals(data), `K ${segments}: byte-exact`)
    // The pieces within K of the reader's, the readable's own buffer, a chunk in flight.
    const bound = segments * piece + (64 << 10) + 16_384
    t.ok(ahead <= bound, `K ${segments}: ${ahead} bytes ahead ≤ ${bound}`)
    t.ok(ahead >= piece, `K ${segments}: pieces were fetched ahead at all (${ahead})`)
  }
})

t.test('the slots bound the extra connections of all bodies together', async t => {
  const slots = new SegmentSlots(2)
  let most = 0
  const bodies = Array.from({ length: 4 }, () => {
    const data = randomBytes(300_000)
    const src = sources(data, 8_192, 50_000)
    const fetchRange: RangeFetch = async (s, e, signal) => { most = Math.max(most, slots.inUse); return await src.fetchRange(s, e, signal) }
    return { data, body: new SegmentedBody({ first: src.first, firstSize: 50_000, size: data.length, segments: 4, slots, maxPiece: 50_000, fetchRange }) }
  })
  const results = await Promise.all(bodies.map(async b => await readAll(b.body)))
  results.forEach((r, i) => t.ok(r.bytes.equals(bodies[i].data), `body ${i} byte-exact`))
  t.ok(most <= 2 && most > 0, `at most 2 slots in use (saw ${most})`)
  await settled(slots)
  t.equal(slots.inUse, 0)
})

t.test('destroying the body stops every request and gives the slots back', async t => {
  const data = randomBytes(500_000)
  const src = sources(data, 4_096, 50_000)
  const slots = new SegmentSlots(8)
  const body = new SegmentedBody({ first: src.first, firstSize: 50_000, size: data.length, segments: 4, slots, maxPiece: 50_000, fetchRange: src.fetchRange })
  const first = await new Promise<Buffer>(resolve => body.once('data', resolve))
  t.ok(first.equals(data.subarray(0, first.length)))
  body.destroy()
  await settled(slots)
  t.equal(slots.inUse, 0)
})

t.test('requestBlob: what each answer to bytes=0- leads to', async t => {
  const data = randomBytes(100_000)
  const slots = new SegmentSlots(4)
  const opts = { segments: 4, minSize: 50_000, slots, maxPiece: 30_000 }
  const req: UpstreamRequest = { host: 'up.test', method: 'GET', path: '/v2/x/blobs/d', headers: { authorization: 'Bearer t', 'user-agent': 'ua' }, followRedirects: true }
  const seen: UpstreamRequest[] = []
  const upstream = (respond: (r: UpstreamRequest) => UpstreamResponse): { request: (r: UpstreamRequest) => Promise<UpstreamResponse> } =>
    ({ request: async r => { seen.push(r); return respond(r) } })
  const ranged = (r: UpstreamRequest, url = 'https://up.test/v2/x/blobs/d'): UpstreamResponse => {
    const m = /^bytes=(\d+)-(\d*)$/.exec(String(r.headers?.range))
    if (m === null) return answer(200, Readable.from([data]))
    const start = Number(m[1]); const end = m[2] === '' ? data.length - 1 : Math.min(data.length - 1, Number(m[2]))
    return { ...answer(206, Readable.from([data.subarray(start, end + 1)]), `bytes ${start}-${end}/${data.length}`), headers: { 'content-range': `bytes ${start}-${end}/${data.length}`, 'content-length': String(end - start + 1), 'content-type': 'application/octet-stream' }, url }
  }

  await t.test('206 for a large blob: a 200 of the whole size, the rest in K-1 pieces over range requests', async t => {
    seen.length = 0
    const a = await requestBlob(upstream(r => ranged(r)), req, opts)
    t.equal(a.status, 200)
    t.equal(a.headers['content-length'], String(data.length))
    t.equal(a.headers['content-range'], undefined)
    t.equal(a.headers['content-type'], 'application/octet-stream')
    t.ok((await readAll(a.body)).bytes.equals(data))
    t.same(seen.map(r => r.headers?.range), ['bytes=0-49999', 'bytes=50000-66666', 'bytes=66667-83333', 'bytes=83334-99999'])
    t.ok(seen.every(r => r.headers?.authorization === 'Bearer t' && r.host === 'up.test'), 'same upstream, same credentials')
  })
  await t.test('a blob under the minimum size: the first answer, one request', async t => {
    seen.length = 0
    for (const minSize of [100_000, 100_001]) {
      seen.length = 0
      const a = await requestBlob(upstream(r => ranged(r)), req, { ...opts, minSize })
      t.equal(a.status, 200)
      t.equal(a.headers['content-length'], String(data.length))
      t.ok((await readAll(a.body)).bytes.equals(data))
      t.same(seen.map(r => r.headers?.range), [`bytes=0-${minSize - 1}`])
    }
  })
  await t.test('200 to the range: the one stream as is', async t => {
    seen.length = 0
    const a = await requestBlob(upstream(() => answer(200, Readable.from([data]))), req, opts)
    t.equal(a.status, 200)
    t.ok((await readAll(a.body)).bytes.equals(data))
    t.equal(seen.length, 1)
  })
  await t.test('416 (an empty blob): asked again without Range', async t => {
    seen.length = 0
    const a = await requestBlob(upstream(r => r.headers?.range !== undefined ? answer(416, Readable.from([])) : answer(200, Readable.from([]))), req, opts)
    t.equal(a.status, 200)
    t.same(seen.map(r => r.headers?.range), ['bytes=0-49999', undefined])
  })
  await t.test('a 206 that is not bytes 0-(T-1)/T: dropped unread, the blob asked for without Range', async t => {
    for (const cr of ['bytes 1-99999/100000', 'bytes 0-29999/100000', 'bytes 0-59999/100000', 'bytes */100000', 'bytes 0-99999/*']) {
      seen.length = 0
      const bad = Readable.from([randomBytes(10)])
      const a = await requestBlob(upstream(r => r.headers?.range !== undefined ? answer(206, bad, cr) : answer(200, Readable.from([data]))), req, opts)
      t.equal(a.status, 200, cr)
      t.ok((await readAll(a.body)).bytes.equals(data), `${cr}: the plain GET's bytes`)
      t.ok(bad.destroyed, `${cr}: the 206 was dropped`)
      t.same(seen.map(r => r.headers?.range), ['bytes=0-49999', undefined])
    }
  })
  await t.test('404 and other answers come back as they are', async t => {
    const a = await requestBlob(upstream(() => answer(404, Readable.from([Buffer.from('{}')]))), req, opts)
    t.equal(a.status, 404)
  })
  await t.test('after a redirect the pieces go to the URL that answered, without Authorization', async t => {
    seen.length = 0
    const cdn = 'https://cdn.test:8443/blobs/d?sig=abc'
    const a = await requestBlob(upstream(r => ranged(r, cdn)), req, opts)
    t.ok((await readAll(a.body)).bytes.equals(data))
    const pieces = seen.slice(1)
    t.equal(pieces.length, 3)
    t.ok(pieces.every(r => r.host === 'cdn.test:8443' && r.path === '/blobs/d?sig=abc' && r.followRedirects !== true), 'to the CDN URL')
    t.ok(pieces.every(r => r.headers?.authorization === undefined && r.headers?.['user-agent'] === 'ua'), 'Authorization stays home')
  })
  await t.test('UPSTREAM_SEGMENTS=1: no Range at all', async t => {
    seen.length = 0
    await requestBlob(upstream(() => answer(200, Readable.from([data]))), req, { ...opts, segments: 1 })
    t.equal(seen[0].headers?.range, undefined)
  })
})
