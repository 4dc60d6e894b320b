// Issue 20 (CPU per byte): a fill stores its body in batches, not one write per upstream chunk, and
// still makes a partial batch visible without waiting for more bytes; a TailReader reads into the
// buffers its consumer hands back, and the bytes stay exact.
import t from 'tap'
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { BlobFill } from '../../../src/cache/blob-fill.js'
import { FillSink } from '../../../src/cache/fill-sink.js'
import { TailReader } from '../../../src/cache/tail-reader.js'
import { parseDigest } from '../../../src/oci/digest.js'
import { tempDir, store, blob, controlledBody, writtenAtLeast } from './helpers.js'

const RECORD = 16 << 10 // what a TLS socket delivers at most per chunk

function fillOf (r: { fill: BlobFill } | { bypass: string }): BlobFill {
  if (!('fill' in r)) throw new Error(`unexpected bypass: ${r.bypass}`)
  return r.fill
}

t.test('a body in 16 KiB chunks is stored in batches of at least 256 KiB, bytes and digest unchanged', async t => {
  const b = blob(4 << 20)
  const batches: Buffer[][] = []
  const sink = new FillSink(parseDigest(b.digest), b.data.length, 0, async buffers => { batches.push(buffers) }, () => {})
  const chunks = Array.from({ length: b.data.length / RECORD }, (_, i) => b.data.subarray(i * RECORD, (i + 1) * RECORD))
  await pipeline(Readable.from(chunks, { objectMode: false }), sink)
  t.ok(Buffer.concat(batches.flat()).equals(b.data), 'the stored bytes are the body, in order')
  t.equal(`sha256:${sink.hex()}`, b.digest, 'the digest is the body\'s')
  t.equal(sink.length, b.data.length)
  const sizes = batches.map(bs => bs.reduce((n, x) => n + x.length, 0))
  t.ok(sizes.slice(0, -1).every(n => n >= 256 << 10), `every batch but the last holds ≥ 256 KiB (${sizes.join(', ')})`)
  t.ok(batches.length <= 16, `${chunks.length} chunks took ${batches.length} stores, not one each`)
})

t.test('a partial batch is stored while the upstream sends nothing more, and readers see it', async t => {
  const s = await store(t, await tempDir(t))
  const b = blob(1 << 20)
  const body = controlledBody()
  const fill = fillOf(s.blobs.beginFill(parseDigest(b.digest), body, { expectedSize: b.data.length }))
  body.write(b.data.subarray(0, RECORD))
  // The upstream stalls after one record: the record must still reach the file (the flush timer),
  // or a client would wait for bytes crossdock already has.
  await writtenAtLeast(fill, RECORD)
  t.equal(fill.written, RECORD, 'the one record is on disk')
  const reader = new TailReader(fill)
  const first: Buffer = await new Promise((resolve, reject) => { reader.once('data', resolve); reader.once('error', reject) })
  t.ok(first.equals(b.data.subarray(0, first.length)) && first.length > 0, 'a reader gets it before the upstream sends more')
  reader.destroy()
  body.end(b.data.subarray(RECORD))
  await fill.done
  t.equal(fill.state, 'committed')
})

t.test('a TailReader reuses the buffers its consumer recycles, and every byte stays exact', async t => {
  const s = await store(t, await tempDir(t))
  const b = blob(12 << 20)
  const fill = fillOf(s.blobs.beginFill(parseDigest(b.digest), Readable.from([b.data]), { expectedSize: b.data.length }))
  const reader = new TailReader(fill)
  const hash = createHash('sha256')
  const memories = new Set<ArrayBufferLike>()
  let chunks = 0
  for await (const chunk of reader) {
    const c = chunk as Buffer
    chunks++
    memories.add(c.buffer)
    hash.update(c)
    // Recycled only once consumed, as a response's write callback would.
    reader.recycle(c)
  }
  t.equal(`sha256:${hash.digest('hex')}`, b.digest, 'the reader served the exact body')
  t.ok(memories.size < chunks, `${chunks} chunks came in ${memories.size} distinct buffers`)
  await fill.done
})

t.test('recycling a chunk the reader does not own changes nothing', async t => {
  const s = await store(t, await tempDir(t))
  const b = blob(3 << 20)
  const fill = fillOf(s.blobs.beginFill(parseDigest(b.digest), Readable.from([b.data]), { expectedSize: b.data.length }))
  const reader = new TailReader(fill)
  const foreign = Buffer.alloc(1 << 20, 7)
  const got: Buffer[] = []
  for await (const chunk of reader) {
    got.push(Buffer.from(chunk as Buffer))
    reader.recycle(foreign)
  }
  t.ok(Buffer.concat(got).equals(b.data), 'the body is exact')
  t.ok(foreign.every(x => x === 7), 'the foreign buffer was never read into')
  await fill.done
})
