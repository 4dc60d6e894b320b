import t, { type Test } from 'tap'
import cacache from 'cacache'
import { mkdir, readdir, writeFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import type { BlobFill } from '../../../src/cache/blob-fill.js'
import { TailReader } from '../../../src/cache/tail-reader.js'
import { contentPath, } from '../../../src/cache/cache-paths.js'
import { tempDir, store, blob, collect, controlledBody, writtenAtLeast, sha256 } from './helpers.js'
import { parseDigest, type Digest } from '../../../src/oci/digest.js'
import type { CacheStore } from '../../../src/cache/cache-store.js'

function fillOf (r: { fill: BlobFill } | { bypass: string }): BlobFill {
  if (!('fill' in r)) throw new Error(`unexpected bypass: ${r.bypass}`)
  return r.fill
}

t.test('followers read a blob while it grows, and all get the exact bytes', async t => {
  const s = await store(t, await tempDir(t))
  const b = blob(3 << 20)
  const body = controlledBody()
  const fill = fillOf(s.blobs.beginFill(parseDigest(b.digest), body, { expectedSize: b.data.length }))
  t.equal(s.blobs.inflight(parseDigest(b.digest)), fill)
  const first = new TailReader(fill)
  const firstDone = collect(first)
  body.write(b.data.subarray(0, 1 << 20))
  await writtenAtLeast(fill, 1 << 20)
  // A joiner arrives mid-download and can read what is on disk before the rest exists.
  const joiner = new TailReader(fill)
  const early: Buffer = await new Promise((resolve, reject) => { joiner.once('data', resolve); joiner.once('error', reject) })
  t.ok(early.equals(b.data.subarray(0, early.length)), 'joiner got the first bytes before the upstream finished')
  t.equal(fill.state, 'filling')
  const rest = collect(joiner)
  body.end(b.data.subarray(1 << 20))
  await fill.done
  t.ok((await firstDone).equals(b.data))
  t.ok(Buffer.concat([early, await rest]).equals(b.data))
  t.equal(s.blobs.inflight(parseDigest(b.digest)), undefined)
  t.ok(s.blobs.stat(parseDigest(b.digest)), 'committed')
  // Settled and every reader gone: the descriptor is closed, a late reader is told to look again.
  await t.rejects(collect(new TailReader(fill, 10, 19)), { code: 'ERR_FILL_GONE' }, 'a reader made after the fill closed asks for a new look-up')
  const opened = await s.blobs.open(parseDigest(b.digest))
  t.ok(opened, 'the look-up finds the committed blob')
  const part = Buffer.alloc(10)
  await opened!.fh.read(part, 0, 10, 10)
  await opened!.fh.close()
  t.ok(part.equals(b.data.subarray(10, 20)), 'and reads its bytes')
})

for (const [name, feed, code] of [
  ['wrong digest', (body: NodeJS.WritableStream, data: Buffer) => { const bad = Buffer.from(data); bad[5] ^= 1; body.end(bad) }, 'ERR_BLOB_DIGEST_MISMATCH'],
  ['truncated body', (body: NodeJS.WritableStream, data: Buffer) => { body.end(data.subarray(0, data.length - 1)) }, 'ERR_BLOB_TRUNCATED'],
  ['upstream error mid-stream', (body: NodeJS.WritableStream & { destroy: (e: Error) => void }, data: Buffer) => { body.write(data.subarray(0, 1000)); setImmediate(() => body.destroy(new Error('socket hang up'))) }, 'ERR_BLOB_FILL'],
  ['too many bytes', (body: NodeJS.WritableStream, data: Buffer) => { body.end(Buffer.concat([data, Buffer.from('x')])) }, 'ERR_BLOB_TOO_LONG'],
] as const) {
  t.test(`${name}: readers are aborted with an error, nothing is committed, the next fill runs`, async t => {
    const dir = await tempDir(t)
    const s = await store(t, dir)
    const b = blob(200_000)
    const body = controlledBody()
    const fill = fillOf(s.blobs.beginFill(parseDigest(b.digest), body, { expectedSize: b.data.length }))
    const readers = [new TailReader(fill), new TailReader(fill)]
    const results = readers.map(async r => await collect(r).then(() => 'clean end', (err: Error & { code?: string }) => err.code ?? err.message))
    feed(body as any, b.data)
    await t.rejects(fill.done)
    t.equal((fill.error as Error & { code: string }).code, code)
    t.same(await Promise.all(results), [code, code], 'no reader saw a clean end')
    t.equal(s.blobs.stat(parseDigest(b.digest)), undefined)
    t.equal(await cacache.get.info(dir, `blob:${b.digest}`), null, 'not indexed')
    t.same(await readdir(join(dir, 'tmp', (await readdir(join(dir, 'tmp')))[0])), [], 'staging file removed')
    t.equal(s.blobs.inflight(parseDigest(b.digest)), undefined)
    t.equal(s.stats().reservedBytes, 0, 'reservation released')
    const again = fillOf(s.blobs.beginFill(parseDigest(b.digest), Readable.from([b.data]), { expectedSize: b.data.length }))
    await again.done
    t.ok(s.blobs.stat(parseDigest(b.digest)), 'a later fill of the same digest commits')
  })
}

t.test('sha512 blobs commit too', async t => {
  const s = await store(t, await tempDir(t))
  const data = Buffer.from('sha512 layer')
  const { createHash } = await import('node:crypto')
  const digest = `sha512:${createHash('sha512').update(data).digest('hex')}`
  await fillOf(s.blobs.beginFill(parseDigest(digest), Readable.from([data]))).done
  t.equal(s.blobs.stat(parseDigest(digest))?.size, data.length)
})

t.test('LRU bound over blobs: eviction deletes index entry and content, reservations hold', async t => {
  const dir = await tempDir(t)
  const s = await store(t, dir, { maxSize: 1000 })
  const [a, b, c] = [blob(400), blob(400), blob(400)]
  await fillOf(s.blobs.beginFill(parseDigest(a.digest), Readable.from([a.data]), { expectedSize: 400 })).done
  await fillOf(s.blobs.beginFill(parseDigest(b.digest), Readable.from([b.data]), { expectedSize: 400 })).done
  s.blobs.stat(parseDigest(a.digest)) // a read: b is now least recent
  const bodyC = controlledBody()
  const fc = fillOf(s.blobs.beginFill(parseDigest(c.digest), bodyC, { expectedSize: 400 }))
  t.equal(s.blobs.stat(parseDigest(b.digest)), undefined, 'b evicted when c reserved its bytes')
  t.ok(s.blobs.stat(parseDigest(a.digest)))
  const d = blob(400)
  const bodyD = controlledBody()
  const rd = s.blobs.beginFill(parseDigest(d.digest), bodyD, { expectedSize: 400 })
  t.ok('fill' in rd, 'a evicted for d')
  const e = blob(300)
  const re = s.blobs.beginFill(parseDigest(e.digest), Readable.from([e.data]), { expectedSize: 300 })
  t.ok('bypass' in re, 'c and d in flight hold 800 of 1000 bytes: e streams through uncached')
  t.ok(s.stats().usedBytes + s.stats().reservedBytes <= 1000)
  bodyC.end(c.data)
  bodyD.end(d.data)
  await fc.done
  await fillOf(rd).done
  await s.close()
  t.equal(await cacache.get.info(dir, `blob:${b.digest}`), null, 'index entry of b removed')
  await t.rejects(stat(contentPath(dir, parseDigest(b.digest)!)), 'content of b removed')
  const big = s.blobs.beginFill(parseDigest(blob(10).digest), Readable.from([]), { expectedSize: 1001 })
  t.match(big, { bypass: /larger than CACHE_MAX_SIZE/ })
})

t.test('restart: index and recency survive; partial files and orphans are swept', async t => {
  const dir = await tempDir(t)
  const [a, b] = [blob(4000), blob(4000)]
  let clock = 1_700_000_000_000
  const now = (): number => ++clock
  {
    const s = await store(t, dir, { maxSize: 10_000, now })
    await fillOf(s.blobs.beginFill(parseDigest(a.digest), Readable.from([a.data]), { expectedSize: 4000 })).done
    await fillOf(s.blobs.beginFill(parseDigest(b.digest), Readable.from([b.data]), { expectedSize: 4000 })).done
    s.blobs.stat(parseDigest(a.digest)) // b is least recent
    t.ok(await s.manifests.put(parseDigest(sha256(Buffer.from('{"m":1}'))), Buffer.from('{"m":1}'), 'application/vnd.oci.image.manifest.v1+json'))
    await s.tags.put({ host: 'ghcr.io', repository: 'x/y', tag: 'v1', accept: 'b, a' }, { digest: sha256(Buffer.from('{"m":1}')), mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 7, fetchedAt: 123 })
    // a download interrupted by a crash, and content whose index line never made it
    const body = controlledBody()
    const partial = fillOf(s.blobs.beginFill(parseDigest(blob(10).digest), body, { expectedSize: 10 }))
    body.write(Buffer.alloc(5))
    await writtenAtLeast(partial, 5)
    await s.close()
  }
  await mkdir(join(dir, 'tmp', 'staging-old'), { recursive: true })
  await writeFile(join(dir, 'tmp', 'staging-old', 'sha256-abc'), 'partial')
  const orphan = parseDigest(sha256(Buffer.from('orphan')))!
  await mkdir(join(contentPath(dir, orphan), '..'), { recursive: true })
  await writeFile(contentPath(dir, orphan), 'orphan')

  const s = await store(t, dir, { maxSize: 10_000, now })
  t.equal(s.blobs.stat(parseDigest(a.digest))?.size, 4000)
  t.same(await readdir(join(dir, 'tmp')).then(n => n.filter(x => x !== (s.blobs as any).stagingDir.split('/').pop())), [], 'old staging dirs swept')
  await t.rejects(stat(contentPath(dir, orphan)), 'orphan content removed')
  const m = await s.manifests.get(parseDigest(sha256(Buffer.from('{"m":1}'))))
  t.equal(m?.mediaType, 'application/vnd.oci.image.manifest.v1+json')
  t.same(s.tags.get({ host: 'GHCR.io', repository: 'x/y', tag: 'v1', accept: ['a', 'b'] }), { digest: sha256(Buffer.from('{"m":1}')), mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 7, fetchedAt: 123 })
  // Recency came back: b (least recently read before the restart) goes first.
  const c = blob(4000)
  await fillOf(s.blobs.beginFill(parseDigest(c.digest), Readable.from([c.data]), { expectedSize: 4000 })).done
  t.equal(s.blobs.stat(parseDigest(b.digest)), undefined, 'b evicted first')
  t.ok(s.blobs.stat(parseDigest(a.digest)))
})

t.test('CACHE_INACTIVE drops blobs not read for that long, from disk too', async t => {
  const dir = await tempDir(t)
  let now = Date.now()
  const s = await store(t, dir, { inactiveMs: 1000, now: () => now })
  const a = blob(10)
  await fillOf(s.blobs.beginFill(parseDigest(a.digest), Readable.from([a.data]))).done
  now += 1001
  s.purgeInactive()
  t.equal(s.blobs.stat(parseDigest(a.digest)), undefined)
  await s.close()
  t.equal(await cacache.get.info(dir, `blob:${a.digest}`), null)
})

t.test('manifests: digest verified, media type kept, shared content survives evicting one key', async t => {
  const dir = await tempDir(t)
  const s = await store(t, dir)
  const bytes = Buffer.from('{"schemaVersion":2}')
  t.equal(await s.manifests.put(parseDigest(sha256(Buffer.from('other'))), bytes, 'x'), false, 'wrong digest refused')
  t.ok(await s.manifests.put(parseDigest(sha256(bytes)), bytes, 'application/vnd.docker.distribution.manifest.v2+json'))
  t.same(await s.manifests.get(parseDigest(sha256(bytes))), { digest: parseDigest(sha256(bytes)), mediaType: 'application/vnd.docker.distribution.manifest.v2+json', bytes })
  t.ok(s.manifests.has(parseDigest(sha256(bytes))))
  // the same bytes fetched through the blobs endpoint
  await fillOf(s.blobs.beginFill(parseDigest(sha256(bytes)), Readable.from([bytes]))).done
  ;(s.blobs as any).entries.bound.delete(`blob:${sha256(bytes)}`)
  await s.close()
  t.ok((await s.manifests.get(parseDigest(sha256(bytes))))?.bytes.equals(bytes), 'manifest content kept while its key lives')
})

t.test('readers hold back the last byte until the digest is verified', async t => {
  const s = await store(t, await tempDir(t))
  const b = blob(10_000)
  const body = controlledBody()
  const fill = fillOf(s.blobs.beginFill(parseDigest(b.digest), body, { expectedSize: b.data.length }))
  const reader = new TailReader(fill)
  let got = 0
  reader.on('data', (c: Buffer) => { got += c.length })
  const ended = new Promise<void>(resolve => reader.once('end', resolve))
  body.write(b.data) // every byte is on disk, but the upstream has not ended yet
  await writtenAtLeast(fill, b.data.length)
  while (got < b.data.length - 1) await new Promise(resolve => setImmediate(resolve))
  await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(got, b.data.length - 1, 'the last byte waits for the verdict')
  body.end()
  await ended
  t.equal(got, b.data.length)
})

/** A store holding one committed blob, the fill that committed it (settled, descriptor closed), and the store's open/inflight to stub. */
async function settledFill (t: Test, size: number): Promise<{ s: CacheStore, b: { data: Buffer, digest: string }, d: Digest, fill: BlobFill, blobs: Record<'open' | 'inflight', (x: Digest) => unknown> }> {
  const s = await store(t, await tempDir(t))
  const b = blob(size)
  const d = parseDigest(b.digest)
  const fill = fillOf(s.blobs.beginFill(d, Readable.from([b.data]), { expectedSize: b.data.length }))
  await fill.done
  t.equal(await fill.acquire(), undefined, 'settled, every reader gone: its descriptor is closed')
  return { s, b, d, fill, blobs: s.blobs as unknown as Record<'open' | 'inflight', (x: Digest) => unknown> }
}

t.test('openOrFill looks again when the fill it found settled before a share was taken', async t => {
  const { s, b, d, fill, blobs } = await settledFill(t, 100_000)
  // The race, made to happen: the first look misses the committed blob (as if evicted, then put
  // back) and finds the settled fill still in flight. Instance stubs, each answering once.
  const realOpen = blobs.open.bind(s.blobs)
  const realInflight = blobs.inflight.bind(s.blobs)
  let opens = 0
  blobs.open = async (x) => ++opens === 1 ? undefined : await realOpen(x)
  blobs.inflight = (x) => { blobs.inflight = realInflight; return fill }
  let fetches = 0
  const source = await s.blobs.openOrFill(d, async () => { fetches++; return { answer: 'upstream' } })
  t.equal(source.kind, 'cached', 'the second look finds the committed blob, opened')
  t.equal(opens, 2, 'looked twice')
  t.equal(fetches, 0, 'nothing fetched')
  if (source.kind === 'cached') {
    const head = Buffer.alloc(32)
    await source.fh.read(head, 0, 32, 0)
    await source.fh.close()
    t.ok(head.equals(b.data.subarray(0, 32)), 'its bytes')
  }
})

t.test('openOrFill gives up after a bounded number of looks at an item that keeps moving', async t => {
  const { s, d, fill, blobs } = await settledFill(t, 10_000)
  let looks = 0
  blobs.open = async () => { looks++; return undefined }
  blobs.inflight = () => fill
  const source = await s.blobs.openOrFill(d, async () => { throw new Error('not fetched: a fill is in flight') })
  t.same(source, { kind: 'moving' })
  t.equal(looks, 4, 'four looks, then the caller goes upstream')
})
