/**
 * The contract suite of the pull-through cache's stores (src/cache/stores.ts): what every
 * implementation must answer, checked only through the interface. Each case opens a fresh store.
 */
import { createHash, randomBytes } from 'node:crypto'
import { PassThrough, Readable } from 'node:stream'
import type { Test } from 'tap'
import type { CacheStore } from '../../src/cache/stores.js'
import type { BlobFill } from '../../src/cache/blob-fill.js'
import { parseDigest, type Digest } from '../../src/oci/digest.js'
import type { ContractFactory } from './factory.js'

const digestOf = (data: Buffer, algorithm: 'sha256' | 'sha512' = 'sha256'): Digest => parseDigest(`${algorithm}:${createHash(algorithm).update(data).digest('hex')}`)
const ref = { host: 'ghcr.io', repository: 'org/app', tag: 'v1', accept: 'application/vnd.oci.image.index.v1+json' }

function fillOf (r: { fill: BlobFill } | { bypass: string }): BlobFill {
  if (!('fill' in r)) throw new Error(`unexpected bypass: ${r.bypass}`)
  return r.fill
}

async function readAll (fh: { createReadStream: () => Readable }): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of fh.createReadStream()) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

export function cacheStoreContract (t: Test, factory: ContractFactory<CacheStore>): void {
  const test = (name: string, fn: (t: Test, s: CacheStore) => Promise<void>): void => {
    t.test(`${factory.name}: ${name}`, async t => {
      const s = await factory.make()
      t.teardown(async () => { await factory.teardown(s) })
      await fn(t, s)
    })
  }

  test('missing is undefined or false, never an exception', async (t, s) => {
    const d = digestOf(Buffer.from('never cached'))
    t.equal(s.blobs.stat(d), undefined)
    t.equal(await s.blobs.head(d), undefined)
    t.equal(await s.blobs.open(d), undefined)
    t.equal(s.blobs.inflight(d), undefined)
    t.equal(s.manifests.has(d), false)
    t.equal(await s.manifests.get(d), undefined)
    t.equal(s.tags.get(ref), undefined)
  })

  test('a blob becomes visible only once all of it hashed to its digest', async (t, s) => {
    for (const algorithm of ['sha256', 'sha512'] as const) {
      const data = randomBytes(300_000)
      const d = digestOf(data, algorithm)
      const body = new PassThrough()
      const fill = fillOf(s.blobs.beginFill(d, body, { expectedSize: data.length, mediaType: 'application/octet-stream' }))
      t.equal(s.blobs.inflight(d), fill, 'joinable while in flight')
      t.throws(() => s.blobs.beginFill(d, new PassThrough()), 'a second fill of the same digest is refused')
      body.write(data.subarray(0, 1000))
      t.equal(s.blobs.stat(d), undefined, 'not visible half written')
      t.equal(await s.blobs.head(d), undefined, 'not even to a HEAD')
      body.end(data.subarray(1000))
      await fill.done
      t.same(s.blobs.stat(d), { digest: d, size: data.length, mediaType: 'application/octet-stream' }, algorithm)
      t.same(await s.blobs.head(d), { digest: d, size: data.length, mediaType: 'application/octet-stream' }, `${algorithm}: head`)
      const opened = await s.blobs.open(d)
      t.ok(opened !== undefined && (await readAll(opened.fh)).equals(data), `${algorithm}: the exact bytes`)
      t.equal(s.blobs.inflight(d), undefined, 'no longer in flight')
    }
  })

  for (const [why, feed] of [
    ['wrong bytes', (body: PassThrough, data: Buffer) => { const bad = Buffer.from(data); bad[0] ^= 1; body.end(bad) }],
    ['short body', (body: PassThrough, data: Buffer) => { body.end(data.subarray(1)) }],
    ['upstream error', (body: PassThrough, data: Buffer) => { body.write(data.subarray(0, 100)); setImmediate(() => body.destroy(new Error('reset'))) }],
  ] as const) {
    test(`${why}: the fill fails, nothing is committed, the next fill may run`, async (t, s) => {
      const data = randomBytes(50_000)
      const d = digestOf(data)
      const body = new PassThrough()
      const fill = fillOf(s.blobs.beginFill(d, body, { expectedSize: data.length }))
      feed(body, data)
      await t.rejects(fill.done)
      t.equal(s.blobs.stat(d), undefined)
      t.equal(await s.blobs.open(d), undefined)
      const again = fillOf(s.blobs.beginFill(d, Readable.from([data]), { expectedSize: data.length }))
      await again.done
      t.equal(s.blobs.stat(d)?.size, data.length, 'a good fill afterwards commits')
    })
  }

  test('openOrFill: concurrent misses fetch once, all of them get the one fill', async (t, s) => {
    const data = randomBytes(100_000)
    const d = digestOf(data)
    let fetches = 0
    const fetch = async (): Promise<{ answer: string, fill: { body: Readable, expectedSize: number } }> => {
      fetches++
      await new Promise(resolve => setImmediate(resolve))
      return { answer: 'upstream 200', fill: { body: Readable.from([data]), expectedSize: data.length } }
    }
    const sources = await Promise.all([1, 2, 3, 4].map(async () => await s.blobs.openOrFill(d, fetch)))
    t.equal(fetches, 1, 'one upstream fetch')
    const fills = sources.map(x => x.kind === 'fill' ? x.fill : undefined)
    t.ok(fills.every(f => f !== undefined && f === fills[0]), 'every caller has the same fill')
    t.equal(sources.filter(x => x.kind === 'fill' && x.leader).length, 1, 'one leader')
    t.ok(sources.every(x => x.kind === 'fill' && x.handle !== undefined), 'each caller holds a share of it')
    for (const x of sources) if (x.kind === 'fill') x.handle.release()
    await fills[0]!.done
    const cached = await s.blobs.openOrFill(d, fetch)
    t.equal(cached.kind, 'cached', 'then it is cached, handed back opened')
    if (cached.kind === 'cached') {
      t.equal(cached.blob.size, data.length)
      const head = Buffer.alloc(16)
      await cached.fh.read(head, 0, 16, 0)
      t.ok(head.equals(data.subarray(0, 16)), 'the handle reads the blob\'s bytes')
      await cached.fh.close()
    }
    t.equal(fetches, 1)
    const answered = await s.blobs.openOrFill(digestOf(Buffer.from('404')), async () => ({ answer: 'upstream 404' }))
    t.same(answered, { kind: 'answer', answer: 'upstream 404' }, 'an uncacheable answer goes back to the asker')
  })

  test('manifests: verified, stored once, read whole with their media type', async (t, s) => {
    const bytes = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}')
    const d = digestOf(bytes)
    t.equal(await s.manifests.put(digestOf(Buffer.from('other')), bytes, 'x/y'), false, 'bytes that do not hash to the digest')
    t.equal(await s.manifests.get(digestOf(Buffer.from('other'))), undefined)
    t.equal(await s.manifests.put(d, bytes, 'application/vnd.oci.image.index.v1+json', { host: 'ghcr.io', repository: 'org/app' }), true)
    t.equal(await s.manifests.put(d, bytes, 'application/vnd.oci.image.index.v1+json'), true, 'idempotent')
    t.ok(s.manifests.has(d))
    t.same(await s.manifests.get(d), { digest: d, mediaType: 'application/vnd.oci.image.index.v1+json', bytes })
    const d512 = digestOf(bytes, 'sha512')
    t.equal(await s.manifests.put(d512, bytes, 'application/vnd.oci.image.index.v1+json'), true, 'sha512 too')
    t.same((await s.manifests.get(d512))?.digest, d512)
  })

  test('tags: a record replaces the previous one whole, at once', async (t, s) => {
    const record = { digest: digestOf(Buffer.from('m1')).value, mediaType: 'application/vnd.oci.image.index.v1+json', size: 2, fetchedAt: 1000 }
    const putting = s.tags.put(ref, record)
    t.same(s.tags.get(ref), record, 'visible before the write settles')
    await putting
    const moved = { ...record, digest: digestOf(Buffer.from('m2')).value, fetchedAt: 2000 }
    await s.tags.put(ref, moved)
    t.same(s.tags.get(ref), moved)
    t.equal(s.tags.get({ ...ref, host: 'quay.io' }), undefined, 'another upstream is another tag')
    t.equal(s.tags.get({ ...ref, accept: 'application/vnd.docker.distribution.manifest.v2+json' }), undefined, 'another Accept is another tag')
    await s.tags.put({ ...ref, tag: 'bad' }, { ...record, digest: 'md5:abc' })
    t.equal(s.tags.get({ ...ref, tag: 'bad' }), undefined, 'a record whose digest cannot be verified is ignored')
  })

  if (factory.reopen !== undefined) {
    const reopen = factory.reopen
    t.test(`${factory.name}: blobs, manifests and tags survive a reopen`, async t => {
      let s = await factory.make()
      t.teardown(async () => { await factory.teardown(s) })
      const data = randomBytes(10_000)
      const d = digestOf(data)
      await fillOf(s.blobs.beginFill(d, Readable.from([data]), { expectedSize: data.length })).done
      const bytes = Buffer.from('{"schemaVersion":2}')
      await s.manifests.put(digestOf(bytes), bytes, 'application/vnd.oci.image.manifest.v1+json')
      const record = { digest: digestOf(bytes).value, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: bytes.length, fetchedAt: 5 }
      await s.tags.put(ref, record)
      s = await reopen(s)
      t.equal(s.blobs.stat(d)?.size, data.length)
      t.ok((await s.manifests.get(digestOf(bytes)))?.bytes.equals(bytes))
      t.same(s.tags.get(ref), record)
    })
  }
}
