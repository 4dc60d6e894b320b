/**
 * The contract suite of the hosted registry's storage (src/registry/storage/stores.ts): what every
 * backend must answer, checked only through the interface. Each case opens a fresh store.
 */
import { randomBytes } from 'node:crypto'
import { PassThrough, Readable, Writable } from 'node:stream'
import type { Test } from 'tap'
import type { RegistryBackend } from '../../src/registry/storage/stores.js'
import { digestOfBytes, type Digest } from '../../src/oci/digest.js'
import type { ContractFactory } from './factory.js'

const sha256 = (data: Buffer): Digest => digestOfBytes('sha256', data)

/** A sink that keeps what it is sent, as a response would. */
function sink (): Writable & { bytes: () => Buffer } {
  const chunks: Buffer[] = []
  const w = new Writable({ write (c: Buffer, _e, cb) { chunks.push(Buffer.from(c)); cb() } })
  return Object.assign(w, { bytes: () => Buffer.concat(chunks) })
}

/** Pushes `data` into `name` through an upload session, as the upload handlers do. */
async function upload (s: RegistryBackend, name: string, data: Buffer): Promise<Digest> {
  const digest = sha256(data)
  const session = await s.uploads.create(name, { algorithm: 'sha256' })
  const cut = Math.min(10, data.length)
  await s.uploads.append(name, session.id, Readable.from([data.subarray(0, cut)]), { start: 0 })
  await s.uploads.complete(name, session.id, digest, Readable.from([data.subarray(cut)]), { start: cut })
  return digest
}

export function registryStorageContract (t: Test, factory: ContractFactory<RegistryBackend>): void {
  const test = (name: string, fn: (t: Test, s: RegistryBackend) => Promise<void>): void => {
    t.test(`${factory.name}: ${name}`, async t => {
      const s = await factory.make()
      t.teardown(async () => { await factory.teardown(s) })
      await fn(t, s)
    })
  }

  test('missing is undefined or false, never an exception', async (t, s) => {
    const unknown = sha256(Buffer.from('never stored'))
    t.equal(await s.blobs.stat('a/b', unknown), undefined, 'blob stat')
    t.equal(await s.blobs.link('a/b', unknown), undefined, 'link of content that does not exist')
    t.equal(await s.blobs.unlink('a/b', unknown), false, 'unlink')
    let ready = false
    const out = sink()
    t.equal(await s.blobs.send(unknown, out, { ready: () => { ready = true } }), false, 'send')
    t.notOk(ready, 'ready not called for missing content')
    t.equal(out.bytes().length, 0, 'nothing written')
    t.equal(await s.manifests.get('a/b', unknown), undefined, 'manifest get')
    t.equal(await s.manifests.stat('a/b', unknown), undefined, 'manifest stat')
    t.equal(await s.manifests.delete('a/b', unknown), false, 'manifest delete')
    t.same(await s.manifests.referrers('a/b', unknown), [], 'referrers')
    t.equal(await s.tags.resolve('a/b', 'v1'), undefined, 'tag resolve')
    t.equal(await s.tags.delete('a/b', 'v1'), false, 'tag delete')
    t.equal(await s.tags.list('a/b'), undefined, 'tags of a repository that does not exist')
    t.equal(await s.uploads.get('a/b', '00000000-0000-4000-8000-000000000000'), undefined, 'upload session')
    t.equal(await s.uploads.cancel('a/b', '00000000-0000-4000-8000-000000000000'), false, 'cancel')
    await t.rejects(s.uploads.append('a/b', '00000000-0000-4000-8000-000000000000', Readable.from([Buffer.from('x')])), { code: 'BLOB_UPLOAD_UNKNOWN' }, 'append to an unknown session')
  })

  test('an upload becomes a blob, visible whole and only in its repository until linked', async (t, s) => {
    const data = randomBytes(100_000)
    const digest = await upload(s, 'team/app', data)
    t.same(await s.blobs.stat('team/app', digest), { digest: digest.value, size: data.length })
    t.equal(await s.blobs.stat('team/other', digest), undefined, 'another repository does not see it')
    const out = sink()
    let readyBeforeBytes: boolean | undefined
    t.ok(await s.blobs.send(digest, out, { ready: () => { readyBeforeBytes = out.bytes().length === 0 } }))
    t.ok(out.bytes().equals(data), 'the exact bytes')
    t.equal(readyBeforeBytes, true, 'ready runs before the first byte')
    const part = sink()
    t.ok(await s.blobs.send(digest, part, { range: { start: 10, end: 19 } }))
    t.ok(part.bytes().equals(data.subarray(10, 20)), 'an inclusive range')
    t.same(await s.blobs.link('team/other', digest), { digest: digest.value, size: data.length }, 'mount')
    t.same(await s.blobs.link('team/other', digest), { digest: digest.value, size: data.length }, 'link is idempotent')
    t.ok(await s.blobs.unlink('team/app', digest))
    t.equal(await s.blobs.stat('team/app', digest), undefined, 'unlinked')
    t.same(await s.blobs.stat('team/other', digest), { digest: digest.value, size: data.length }, 'content stays for the other link')
    const listed = []
    for await (const b of s.blobs.list()) listed.push(b)
    t.ok(listed.some(b => b.digest.value === digest.value && b.size === data.length && typeof b.modifiedAt === 'number'), 'list has it')
  })

  test('a digest mismatch makes nothing visible and discards the session', async (t, s) => {
    const data = Buffer.from('the real bytes of this blob')
    const session = await s.uploads.create('x/y')
    t.equal((await s.uploads.get('x/y', session.id))?.offset, 0)
    t.equal(await s.uploads.get('x/other', session.id), undefined, 'a session belongs to its repository')
    await t.rejects(s.uploads.append('x/y', session.id, Readable.from([data]), { start: 5 }), { code: 'RANGE_INVALID', status: 416 }, 'a chunk must start at the offset')
    t.equal(await s.uploads.append('x/y', session.id, Readable.from([data]), { start: 0 }), data.length)
    t.equal((await s.uploads.get('x/y', session.id))?.offset, data.length, 'the offset to resume from')
    const wrong = sha256(Buffer.from('other bytes'))
    await t.rejects(s.uploads.complete('x/y', session.id, wrong), { code: 'DIGEST_INVALID' })
    t.equal(await s.blobs.stat('x/y', wrong), undefined)
    t.equal(await s.blobs.stat('x/y', sha256(data)), undefined, 'not under its true digest either')
    t.equal(await s.uploads.get('x/y', session.id), undefined, 'the session is gone')
  })

  test('bytes that arrived before a client went away stay in the session', async (t, s) => {
    const session = await s.uploads.create('x/y')
    const body = new PassThrough()
    body.on('error', () => {}) // the request's own 'error', handled by the server in real life
    const appending = s.uploads.append('x/y', session.id, body, { start: 0 })
    body.write(Buffer.alloc(1000, 1))
    await new Promise(resolve => setImmediate(resolve))
    body.destroy(new Error('client gone'))
    await appending.catch(() => {})
    const offset = (await s.uploads.get('x/y', session.id))?.offset ?? -1
    t.ok(offset >= 0 && offset <= 1000, `offset ${offset} is what arrived`)
    t.equal(await s.uploads.append('x/y', session.id, Readable.from([Buffer.alloc(5, 2)]), { start: offset }), offset + 5, 'resumes there')
    t.ok(await s.uploads.cancel('x/y', session.id))
    t.equal(await s.uploads.get('x/y', session.id), undefined)
  })

  test('manifests: stored once, linked per repository, listed, referrers, deleted', async (t, s) => {
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: {}, layers: [] }))
    const digest = sha256(body)
    const mediaType = 'application/vnd.oci.image.manifest.v1+json'
    await s.manifests.put('r/one', { digest, mediaType, body })
    await s.manifests.put('r/one', { digest, mediaType, body })
    const got = await s.manifests.get('r/one', digest)
    t.ok(got?.body.equals(body), 'bytes')
    t.same(got?.descriptor, { mediaType, digest: digest.value, size: body.length })
    t.same(await s.manifests.stat('r/one', digest), { mediaType, digest: digest.value, size: body.length })
    t.equal(await s.manifests.get('r/two', digest), undefined, 'another repository does not have it')
    t.same((await s.manifests.list('r/one')).map(m => m.digest.value), [digest.value])
    t.ok((await s.manifests.repositories()).includes('r/one'))

    const referrer = Buffer.from(JSON.stringify({ schemaVersion: 2, subject: { digest: digest.value } }))
    const rd = sha256(referrer)
    const descriptor = { mediaType, digest: rd.value, size: referrer.length, artifactType: 'application/x-signature' }
    await s.manifests.put('r/one', { digest: rd, mediaType, body: referrer, subject: digest, referrer: descriptor })
    t.same(await s.manifests.referrers('r/one', digest), [descriptor])
    t.equal((await s.manifests.get('r/one', rd))?.subject, digest.value)
    t.ok(await s.manifests.delete('r/one', rd))
    t.same(await s.manifests.referrers('r/one', digest), [], 'the referrer entry goes with it')
    t.ok(await s.manifests.delete('r/one', digest))
    t.equal(await s.manifests.get('r/one', digest), undefined)
    t.equal(await s.manifests.delete('r/one', digest), false)
  })

  test('tags: set replaces whole, list is sorted, delete says whether it existed', async (t, s) => {
    const [a, b] = [sha256(Buffer.from('a')), sha256(Buffer.from('b'))]
    await s.tags.set('r/t', 'v2', a)
    await s.tags.set('r/t', 'v1', a)
    t.equal((await s.tags.resolve('r/t', 'v1'))?.value, a.value)
    await s.tags.set('r/t', 'v1', b)
    t.equal((await s.tags.resolve('r/t', 'v1'))?.value, b.value, 'moved')
    await Promise.all([s.tags.set('r/t', 'race', a), s.tags.set('r/t', 'race', b)])
    t.ok([a.value, b.value].includes((await s.tags.resolve('r/t', 'race'))?.value ?? ''), 'concurrent sets: one of them, whole')
    t.same(await s.tags.list('r/t'), ['race', 'v1', 'v2'])
    t.ok(await s.tags.delete('r/t', 'v2'))
    t.equal(await s.tags.delete('r/t', 'v2'), false)
    t.same(await s.tags.list('r/t'), ['race', 'v1'])
  })

  test('gc: remove keeps content written or retained since the mark', async (t, s) => {
    const data = Buffer.from('collectable')
    const digest = await upload(s, 'g/c', data)
    t.equal(await s.blobs.remove(digest, 0), false, 'written after the mark: kept')
    t.ok(await s.blobs.stat('g/c', digest), 'still there')
    t.equal(await s.blobs.remove(digest, Date.now() + 60_000), true, 'not touched since the mark: deleted')
    t.equal(await s.blobs.stat('g/c', digest), undefined, 'gone, link or not')
  })

  test('purge discards sessions untouched since the cut-off', async (t, s) => {
    const session = await s.uploads.create('p/q')
    t.equal((await s.purge(Date.now() - 60_000)).uploads, 0, 'a fresh session stays')
    t.ok(await s.uploads.get('p/q', session.id))
    t.equal((await s.purge(Date.now() + 60_000)).uploads, 1)
    t.equal(await s.uploads.get('p/q', session.id), undefined)
  })

  if (factory.reopen !== undefined) {
    const reopen = factory.reopen
    t.test(`${factory.name}: blobs, manifests and tags survive a reopen`, async t => {
      let s = await factory.make()
      t.teardown(async () => { await factory.teardown(s) })
      const data = Buffer.from('durable')
      const digest = await upload(s, 'd/u', data)
      const body = Buffer.from('{"schemaVersion":2}')
      await s.manifests.put('d/u', { digest: sha256(body), mediaType: 'application/vnd.oci.image.manifest.v1+json', body })
      await s.tags.set('d/u', 'v1', sha256(body))
      s = await reopen(s)
      t.same(await s.blobs.stat('d/u', digest), { digest: digest.value, size: data.length })
      t.ok((await s.manifests.get('d/u', sha256(body)))?.body.equals(body))
      t.equal((await s.tags.resolve('d/u', 'v1'))?.value, sha256(body).value)
    })
  }
}
