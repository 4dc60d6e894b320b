/**
 * What every backend of the hosted registry's stores (registry/storage/stores.ts) must do, written
 * once and run against each: `hostedStoreBehaviours(t, 'fs', make)`. `make` opens a fresh, empty
 * storage and returns it with its teardown. (Issue 16's storage contract suite absorbs this.)
 */
import { createHash } from 'node:crypto'
import { PassThrough, Readable, Writable } from 'node:stream'
import type { Test } from 'tap'
import type { RegistryStorage } from '../../../src/registry/storage/stores.js'

export interface OpenedStorage {
  storage: RegistryStorage
  teardown: () => Promise<void>
}

export type MakeStorage = () => Promise<OpenedStorage>

export function digestOf (data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

/** Deterministic bytes (no two MiB alike), so a misplaced part changes the digest. */
export function patterned (size: number, seed = 1): Buffer {
  const b = Buffer.alloc(size)
  let x = seed
  for (let i = 0; i < size; i += 4) { x = (x * 1103515245 + 12345) >>> 0; b.writeUInt32LE(x, Math.min(i, size - 4)) }
  return b
}

/** What `send` wrote, and whether `ready` ran before the first byte. */
export async function sendAll (storage: RegistryStorage, digest: string, range?: { start: number, end: number }): Promise<{ found: boolean, bytes: Buffer, readyFirst: boolean }> {
  const chunks: Buffer[] = []
  let ready = false
  let readyFirst = true
  // A copy of each chunk: send may recycle its buffers once written (BlobStore.send).
  const out = new Writable({ write (c: Buffer, _e, cb) { if (!ready) readyFirst = false; chunks.push(Buffer.from(c)); cb() } })
  const found = await storage.blobs.send(digest, out, { range, ready: () => { ready = true } })
  return { found, bytes: Buffer.concat(chunks), readyFirst }
}

/** Pushes `data` as a chunked upload of `chunks` pieces; returns the committed blob. */
export async function pushChunked (storage: RegistryStorage, name: string, data: Buffer, chunks: number): Promise<{ digest: string, size: number }> {
  const session = await storage.uploads.create(name)
  const step = Math.ceil(data.length / chunks)
  for (let at = 0; at < data.length; at += step) {
    await storage.uploads.append(name, session.id, Readable.from([data.subarray(at, at + step)]), { start: at })
  }
  return await storage.uploads.complete(name, session.id, digestOf(data))
}

export function hostedStoreBehaviours (t: Test, label: string, make: MakeStorage): void {
  const withStorage = (what: string, fn: (t: Test, s: RegistryStorage) => Promise<void>): void => {
    t.test(`${label}: ${what}`, async t => {
      const opened = await make()
      t.teardown(opened.teardown)
      await fn(t, opened.storage)
    })
  }

  withStorage('a chunked upload commits the right bytes, visible only to its repository', async (t, s) => {
    const data = patterned(3 * 1024 * 1024 + 17)
    const info = await pushChunked(s, 'team/app', data, 3)
    t.same(info, { digest: digestOf(data), size: data.length })
    t.same(await s.blobs.stat('team/app', info.digest), { digest: info.digest, size: data.length })
    t.equal(await s.blobs.stat('team/other', info.digest), undefined, 'not linked into another repository')
    const got = await sendAll(s, info.digest)
    t.ok(got.found)
    t.ok(got.readyFirst, 'ready before the first byte')
    t.equal(digestOf(got.bytes), info.digest)
    const range = await sendAll(s, info.digest, { start: 1024 * 1024 - 3, end: 2 * 1024 * 1024 + 5 })
    t.ok(range.bytes.equals(data.subarray(1024 * 1024 - 3, 2 * 1024 * 1024 + 6)), 'range bytes')
  })

  withStorage('the offset survives between appends, a chunk at the wrong offset is RANGE_INVALID', async (t, s) => {
    const session = await s.uploads.create('a/b')
    t.equal(session.offset, 0)
    t.equal(await s.uploads.append('a/b', session.id, Readable.from([Buffer.alloc(1000, 1)]), { start: 0 }), 1000)
    t.equal((await s.uploads.get('a/b', session.id))?.offset, 1000)
    t.equal(await s.uploads.get('a/other', session.id), undefined, 'another repository does not see the session')
    await t.rejects(s.uploads.append('a/b', session.id, Readable.from([Buffer.alloc(10)]), { start: 10 }), { code: 'RANGE_INVALID', headers: { range: '0-999' } })
    t.equal((await s.uploads.get('a/b', session.id))?.offset, 1000, 'the refused chunk wrote nothing')
  })

  withStorage('a wrong digest: DIGEST_INVALID, nothing visible, the session is gone', async (t, s) => {
    const data = patterned(200_000, 7)
    const session = await s.uploads.create('a/b')
    await s.uploads.append('a/b', session.id, Readable.from([data]))
    const claimed = digestOf('something else')
    await t.rejects(s.uploads.complete('a/b', session.id, claimed), { code: 'DIGEST_INVALID' })
    t.equal(await s.blobs.link('a/b', claimed), undefined, 'no content under the claimed digest')
    t.equal(await s.blobs.link('a/b', digestOf(data)), undefined, 'nor under the real one')
    t.equal(await s.uploads.get('a/b', session.id), undefined)
  })

  withStorage('the final chunk may come with complete; an empty blob commits too', async (t, s) => {
    const data = patterned(70_000, 3)
    const session = await s.uploads.create('x')
    await s.uploads.append('x', session.id, Readable.from([data.subarray(0, 30_000)]))
    const info = await s.uploads.complete('x', session.id, digestOf(data), Readable.from([data.subarray(30_000)]), { start: 30_000 })
    t.equal(info.size, data.length)
    t.equal(digestOf((await sendAll(s, info.digest)).bytes), digestOf(data))
    const empty = await s.uploads.create('x')
    const e = await s.uploads.complete('x', empty.id, digestOf(''))
    t.same(e, { digest: digestOf(''), size: 0 })
    t.same((await sendAll(s, e.digest)).bytes, Buffer.alloc(0))
  })

  withStorage('a client gone mid-body keeps what arrived; cancel discards the session', async (t, s) => {
    const session = await s.uploads.create('x')
    const body = new PassThrough()
    const appending = s.uploads.append('x', session.id, body)
    body.write(Buffer.alloc(5000, 2))
    await new Promise(resolve => setImmediate(resolve))
    body.on('error', () => {}) // the store sees the error through its read; nobody else listens
    body.destroy(new Error('client went away'))
    await t.rejects(appending)
    const offset = (await s.uploads.get('x', session.id))?.offset ?? -1
    t.ok(offset >= 0 && offset <= 5000, `offset ${offset} is at most what arrived`)
    t.equal(await s.uploads.cancel('x', session.id), true)
    t.equal(await s.uploads.get('x', session.id), undefined)
    t.equal(await s.uploads.cancel('x', session.id), false)
    await t.rejects(s.uploads.append('x', session.id, Readable.from([Buffer.alloc(1)])), { code: 'BLOB_UPLOAD_UNKNOWN' })
  })

  withStorage('mount links existing content; unlink removes only the link', async (t, s) => {
    const data = patterned(10_000, 5)
    const { digest } = await pushChunked(s, 'src', data, 1)
    t.same(await s.blobs.link('dst', digest), { digest, size: data.length })
    t.ok(await s.blobs.stat('dst', digest))
    t.equal(await s.blobs.link('dst', digestOf('absent')), undefined)
    t.equal(await s.blobs.unlink('src', digest), true)
    t.equal(await s.blobs.unlink('src', digest), false)
    t.equal(await s.blobs.stat('src', digest), undefined)
    t.ok((await sendAll(s, digest)).found, 'content stays until gc')
  })

  withStorage('manifests, referrers and tags', async (t, s) => {
    const subjectBody = Buffer.from('{"schemaVersion":2,"layers":[]}')
    const subject = digestOf(subjectBody)
    const mediaType = 'application/vnd.oci.image.manifest.v1+json'
    await s.manifests.put('repo/one', { digest: subject, mediaType, body: subjectBody })
    const sigBody = Buffer.from(`{"schemaVersion":2,"subject":{"digest":"${subject}"}}`)
    const sig = digestOf(sigBody)
    const referrer = { mediaType, digest: sig, size: sigBody.length, artifactType: 'application/example' }
    await s.manifests.put('repo/one', { digest: sig, mediaType, body: sigBody, subject, referrer })
    const got = await s.manifests.get('repo/one', subject)
    t.ok(got?.body.equals(subjectBody))
    t.same(got?.descriptor, { mediaType, digest: subject, size: subjectBody.length })
    t.equal(await s.manifests.get('repo/two', subject), undefined)
    t.same(await s.manifests.stat('repo/one', sig), { mediaType, digest: sig, size: sigBody.length })
    t.same(await s.manifests.referrers('repo/one', subject), [referrer])
    t.same((await s.manifests.list('repo/one')).map(r => r.digest).sort(), [subject, sig].sort())
    t.same(await s.manifests.repositories(), ['repo/one'])
    t.ok(await s.blobs.stat('repo/one', subject), 'a manifest is a blob of its repository too')

    t.equal(await s.tags.list('repo/none'), undefined, 'unknown repository')
    t.same(await s.tags.list('repo/one'), [], 'known repository, no tags')
    await s.tags.set('repo/one', 'v2', subject)
    await s.tags.set('repo/one', 'latest', sig)
    await s.tags.set('repo/one', 'latest', subject)
    t.equal(await s.tags.resolve('repo/one', 'latest'), subject, 'last set wins')
    t.same(await s.tags.list('repo/one'), ['latest', 'v2'])
    t.equal(await s.tags.delete('repo/one', 'v2'), true)
    t.equal(await s.tags.delete('repo/one', 'v2'), false)
    t.equal(await s.tags.resolve('repo/one', 'v2'), undefined)

    t.equal(await s.manifests.delete('repo/one', sig), true)
    t.same(await s.manifests.referrers('repo/one', subject), [])
    t.equal(await s.manifests.delete('repo/one', sig), false)
    t.equal(await s.manifests.get('repo/one', sig), undefined)
  })

  withStorage('purge drops sessions untouched since the cut-off, keeps newer ones', async (t, s) => {
    const old = await s.uploads.create('p')
    await s.uploads.append('p', old.id, Readable.from([Buffer.alloc(100)]))
    const purger = s.uploads
    t.equal(await purger.purge(Date.now() - 60_000), 0, 'nothing older than a minute')
    t.equal(await purger.purge(Date.now() + 60_000), 1, 'everything older than a minute from now')
    t.equal(await s.uploads.get('p', old.id), undefined)
  })

  withStorage('gc: list shows content with its time, remove respects keepIfModifiedSince', async (t, s) => {
    const { digest } = await pushChunked(s, 'g', patterned(1000, 9), 1)
    const listed = []
    for await (const b of s.blobs.list()) listed.push(b)
    t.same(listed.map(b => [b.digest, b.size]), [[digest, 1000]])
    t.equal(await s.blobs.remove(digest, listed[0].modifiedAt), false, 'written at the cut-off: kept')
    t.equal(await s.blobs.remove(digest, Date.now() + 60_000), true)
    t.equal((await sendAll(s, digest)).found, false)
  })
}
