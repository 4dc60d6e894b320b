/**
 * Cases of the hosted registry's store contracts (registry/storage/stores.ts) that the contract
 * suite (test/contracts/registry-stores.ts) does not have yet and that a bucket makes worth
 * checking: uploads in several chunks served back by range across part boundaries, the chunk
 * offset check, the final chunk with complete and the empty blob, mount and unlink, gc's listed
 * times agreeing with remove's. Written once, run against each backend:
 * `hostedStoreBehaviours(t, 'fs', make)`. They belong in the contract suite (issue 17 follow-up).
 */
import { createHash } from 'node:crypto'
import { Readable, Writable } from 'node:stream'
import type { Test } from 'tap'
import type { BlobStore, RegistryStorage } from '../../../src/registry/storage/stores.js'
import { parseDigest } from '../../../src/oci/digest.js'

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
export async function sendAll (storage: { blobs: BlobStore }, digest: string, range?: { start: number, end: number }): Promise<{ found: boolean, bytes: Buffer, readyFirst: boolean }> {
  const chunks: Buffer[] = []
  let ready = false
  let readyFirst = true
  // A copy of each chunk: send may recycle its buffers once written (BlobStore.send).
  const out = new Writable({ write (c: Buffer, _e, cb) { if (!ready) readyFirst = false; chunks.push(Buffer.from(c)); cb() } })
  const found = await storage.blobs.send(parseDigest(digest), out, { range, ready: () => { ready = true } })
  return { found, bytes: Buffer.concat(chunks), readyFirst }
}

/** Pushes `data` as a chunked upload of `chunks` pieces; returns the committed blob. */
export async function pushChunked (storage: RegistryStorage, name: string, data: Buffer, chunks: number): Promise<{ digest: string, size: number }> {
  const session = await storage.uploads.create(name)
  const step = Math.ceil(data.length / chunks)
  for (let at = 0; at < data.length; at += step) {
    await storage.uploads.append(name, session.id, Readable.from([data.subarray(at, at + step)]), { start: at })
  }
  return await storage.uploads.complete(name, session.id, parseDigest(digestOf(data)))
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
    t.same(await s.blobs.stat('team/app', parseDigest(info.digest)), { digest: info.digest, size: data.length })
    t.equal(await s.blobs.stat('team/other', parseDigest(info.digest)), undefined, 'not linked into another repository')
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

  withStorage('the final chunk may come with complete; an empty blob commits too', async (t, s) => {
    const data = patterned(70_000, 3)
    const session = await s.uploads.create('x')
    await s.uploads.append('x', session.id, Readable.from([data.subarray(0, 30_000)]))
    const info = await s.uploads.complete('x', session.id, parseDigest(digestOf(data)), Readable.from([data.subarray(30_000)]), { start: 30_000 })
    t.equal(info.size, data.length)
    t.equal(digestOf((await sendAll(s, info.digest)).bytes), digestOf(data))
    const empty = await s.uploads.create('x')
    const e = await s.uploads.complete('x', empty.id, parseDigest(digestOf('')))
    t.same(e, { digest: digestOf(''), size: 0 })
    t.same((await sendAll(s, e.digest)).bytes, Buffer.alloc(0))
  })

  withStorage('mount links existing content; unlink removes only the link', async (t, s) => {
    const data = patterned(10_000, 5)
    const { digest } = await pushChunked(s, 'src', data, 1)
    t.same(await s.blobs.link('dst', parseDigest(digest)), { digest, size: data.length })
    t.ok(await s.blobs.stat('dst', parseDigest(digest)))
    t.equal(await s.blobs.link('dst', parseDigest(digestOf('absent'))), undefined)
    t.equal(await s.blobs.unlink('src', parseDigest(digest)), true)
    t.equal(await s.blobs.unlink('src', parseDigest(digest)), false)
    t.equal(await s.blobs.stat('src', parseDigest(digest)), undefined)
    t.ok((await sendAll(s, digest)).found, 'content stays until gc')
  })

  withStorage('gc: list shows content with its time, remove respects keepIfModifiedSince', async (t, s) => {
    const { digest } = await pushChunked(s, 'g', patterned(1000, 9), 1)
    const listed = []
    for await (const b of s.blobs.list()) listed.push(b)
    t.same(listed.map(b => [b.digest.value, b.size]), [[digest, 1000]])
    t.equal(await s.blobs.remove(parseDigest(digest), listed[0].modifiedAt), false, 'written at the cut-off: kept')
    t.equal(await s.blobs.remove(parseDigest(digest), Date.now() + 60_000), true)
    t.equal((await sendAll(s, digest)).found, false)
  })
}
