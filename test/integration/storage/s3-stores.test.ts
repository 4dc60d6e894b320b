// The storage contract suite (test/contracts) and the extra hosted store cases against a real Ceph
// RGW (STORAGE=s3), plus what only a shared bucket
// has to show: an upload whose requests land on two replicas, two replicas appending at the same
// offset, a multipart publish interrupted midway, and a gateway that stops answering.
// One RGW for the whole file (≈15 s to start), on this file's address 127.0.0.39.
import t from 'tap'
import { Readable } from 'node:stream'
import { S3Client, CreateBucketCommand, ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import { requirePrivateNetns, createScope } from '../../helpers/e2e/index.js'
import { startRgw, type Rgw } from '../../helpers/rgw.js'
import { loadConfig, type S3Config } from '../../../src/config/index.js'
import { createS3Storage, type S3Storage } from '../../../src/registry/storage/s3-storage.js'
import { S3Bucket } from '../../../src/objects/s3-bucket.js'
import { parseDigest } from '../../../src/oci/digest.js'
import { PART_SIZE } from '../../../src/registry/storage/s3-upload-bytes.js'
import { registryStorageContract } from '../../contracts/registry-stores.js'
import { hostedStoreBehaviours, digestOf, patterned, sendAll } from './hosted-store-behaviours.js'

const ADDRESS = '127.0.0.39'
const BUCKET = 'crossdock-stores'

// One gateway shared by every case, and one case stops it: strictly one case at a time.
t.jobs = 1

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 's3-stores')
  const rgw: Rgw = await startRgw(ADDRESS, scope.path('rgw'))
  scope.defer('stop rgw', rgw.stop)
  t.comment(`RGW ready in ${rgw.startMs} ms (pids ${rgw.pids().join(' ')})`)
  const admin = new S3Client({ region: rgw.region, endpoint: rgw.endpoint, forcePathStyle: true, credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey } })
  scope.defer('close admin client', () => admin.destroy())
  await admin.send(new CreateBucketCommand({ Bucket: BUCKET }))

  let prefixes = 0
  const s3Config = (prefix: string): S3Config => {
    const c = loadConfig({ STORAGE: 's3', S3_ENDPOINT: rgw.endpoint, S3_BUCKET: BUCKET, S3_ACCESS_KEY_ID: rgw.accessKeyId, S3_SECRET_ACCESS_KEY: rgw.secretAccessKey, S3_PREFIX: prefix }).storage
    if (c.kind !== 's3') throw new Error('expected s3')
    return c
  }
  /** A fresh key prefix per case: each starts empty without a bucket per case. */
  const freshPrefix = (): string => `case-${++prefixes}`
  const keysUnder = async (prefix: string): Promise<string[]> => {
    const r = await admin.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${prefix}/` }))
    return (r.Contents ?? []).map(o => o.Key?.slice(prefix.length + 1) ?? '').sort()
  }

  // Issue 16's contract suite, unchanged, and the extra cases, against the bucket.
  registryStorageContract(t, {
    name: 's3',
    make: async () => createS3Storage(s3Config(freshPrefix())),
    teardown: async s => { (s as S3Storage).close() },
    reopen: async s => {
      const again = createS3Storage(s3Config((s as S3Storage).keys.prefix))
      ;(s as S3Storage).close()
      return again
    },
  })
  hostedStoreBehaviours(t, 's3', async () => {
    const storage = createS3Storage(s3Config(freshPrefix()))
    return { storage, teardown: async () => storage.close() }
  })

  t.test('an upload whose POST, PATCHes and PUT go to two replicas completes with the right digest', async t => {
    const prefix = freshPrefix()
    const a = createS3Storage(s3Config(prefix))
    const b = createS3Storage(s3Config(prefix))
    t.teardown(() => { a.close(); b.close() })
    // 2.5 parts: the PATCH on b is sliced into part objects, the final object is a 3-part multipart.
    const data = patterned(2 * PART_SIZE + PART_SIZE / 2 + 123, 11)
    const cut = [0, 1_000_000, PART_SIZE + 5, data.length]
    const session = await a.uploads.create('multi/replica')
    const appendStarted = Date.now()
    t.equal(await a.uploads.append('multi/replica', session.id, Readable.from([data.subarray(cut[0], cut[1])]), { start: 0 }), cut[1])
    t.equal((await b.uploads.get('multi/replica', session.id))?.offset, cut[1], 'replica b sees a\'s offset')
    t.equal(await b.uploads.append('multi/replica', session.id, Readable.from([data.subarray(cut[1], cut[2])]), { start: cut[1] }), cut[2])
    t.equal(await a.uploads.append('multi/replica', session.id, Readable.from([data.subarray(cut[2], cut[3])]), { start: cut[2] }), cut[3])
    const appendMs = Date.now() - appendStarted
    const completeStarted = Date.now()
    const info = await b.uploads.complete('multi/replica', session.id, parseDigest(digestOf(data)))
    const completeMs = Date.now() - completeStarted
    t.same(info, { digest: digestOf(data), size: data.length })
    t.comment(`${(data.length / 2 ** 20).toFixed(1)} MiB: appends ${appendMs} ms, complete (re-read + hash + multipart publish) ${completeMs} ms`)
    const got = await sendAll(a, info.digest)
    t.equal(digestOf(got.bytes), info.digest, 'replica a serves what b committed')
    t.same((await keysUnder(prefix)).filter(k => k.startsWith('uploads/')), [], 'the session is gone from the bucket')
  })

  t.test('two replicas appending at the same offset: exactly one wins, the other gets RANGE_INVALID', async t => {
    const prefix = freshPrefix()
    const a = createS3Storage(s3Config(prefix))
    const b = createS3Storage(s3Config(prefix))
    t.teardown(() => { a.close(); b.close() })
    // What the race rests on: RGW honours If-None-Match: * on PutObject (one writer per part key).
    const probe = new S3Bucket(s3Config(prefix))
    t.teardown(() => probe.destroy())
    t.equal(await probe.put(`${prefix}/probe`, 'first', { ifNoneMatch: true }), true, 'conditional PUT of a new key')
    t.equal(await probe.put(`${prefix}/probe`, 'second', { ifNoneMatch: true }), false, 'conditional PUT of an existing key: 412')
    t.equal((await probe.getBytes(`${prefix}/probe`))?.toString(), 'first', 'the first write stands')
    const session = await a.uploads.create('race')
    const results = await Promise.allSettled([
      a.uploads.append('race', session.id, Readable.from([Buffer.alloc(4000, 1)]), { start: 0 }),
      b.uploads.append('race', session.id, Readable.from([Buffer.alloc(4000, 2)]), { start: 0 }),
    ])
    t.equal(results.filter(r => r.status === 'fulfilled').length, 1, 'one append succeeded')
    const refused = results.find(r => r.status === 'rejected') as PromiseRejectedResult
    t.match(refused.reason, { code: 'RANGE_INVALID', headers: { range: '0-3999' } })
    t.equal((await b.uploads.get('race', session.id))?.offset, 4000)
  })

  t.test('a multipart publish interrupted midway leaves nothing visible, and the PUT can be retried', async t => {
    const prefix = freshPrefix()
    const config = s3Config(prefix)
    let failPart: number | undefined
    const injected = (b: S3Bucket): Error => b.unavailable(Object.assign(new Error('injected: connection reset'), { code: 'ECONNRESET' }))
    class FailingBucket extends S3Bucket {
      override async uploadPart (key: string, uploadId: string, partNumber: number, body: Buffer): Promise<string> {
        if (partNumber === failPart) throw injected(this)
        return await super.uploadPart(key, uploadId, partNumber, body)
      }

      override async uploadPartCopy (key: string, uploadId: string, partNumber: number, sourceKey: string): Promise<string> {
        if (partNumber === failPart) throw injected(this)
        return await super.uploadPartCopy(key, uploadId, partNumber, sourceKey)
      }
    }
    const bucket = new FailingBucket(config)
    const { blobs, uploads } = createS3Storage(config, {}, bucket)
    t.teardown(() => bucket.destroy())
    // Big PATCHes: parts of PART_SIZE, published by UploadPartCopy. Small ones (< 5 MiB each, as
    // some clients chunk): rewritten into PART_SIZE parts. Part 2 of the publish fails in both.
    const shapes: Array<[string, number]> = [['one big PATCH (part copy)', 1], ['five small PATCHes (rewrite)', 5]]
    for (const [i, [shape, chunks]] of shapes.entries()) {
      const data = patterned(2 * PART_SIZE + 1000, 13 + i)
      const step = Math.ceil(data.length / chunks)
      const session = await uploads.create('cut')
      for (let at = 0; at < data.length; at += step) await uploads.append('cut', session.id, Readable.from([data.subarray(at, at + step)]), { start: at })
      failPart = 2
      await t.rejects(uploads.complete('cut', session.id, parseDigest(digestOf(data))), { code: 'UNAVAILABLE' }, `${shape}: the PUT fails`)
      t.equal(await blobs.contentInfo(parseDigest(digestOf(data))), undefined, `${shape}: no blob under the digest`)
      t.same((await keysUnder(prefix)).filter(k => k.startsWith('blobs/')), [], `${shape}: no key under blobs/`)
      const inProgress = await admin.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: `${prefix}/` }))
      t.same(inProgress.Uploads ?? [], [], `${shape}: the multipart upload was aborted`)
      failPart = undefined
      t.same(await uploads.complete('cut', session.id, parseDigest(digestOf(data))), { digest: digestOf(data), size: data.length }, `${shape}: the session survived; a retry commits`)
      t.equal(digestOf((await sendAll({ blobs }, digestOf(data))).bytes), digestOf(data), `${shape}: the committed bytes`)
      await blobs.remove(parseDigest(digestOf(data)), Date.now() + 60_000)
    }
  })

  t.test('RGW stopped: stores throw UNAVAILABLE (503, one line), check() says why; back when it returns', async t => {
    const storage: S3Storage = createS3Storage(s3Config(freshPrefix()), { connectTimeoutMs: 1000, requestTimeoutMs: 3000 })
    t.teardown(() => storage.close())
    await storage.tags.set('down', 'v1', parseDigest(digestOf('x')))
    await rgw.stopGateway()
    let err: unknown
    let reason: string | undefined
    try {
      err = await storage.tags.resolve('down', 'v1').then(() => undefined, (e: unknown) => e)
      reason = await storage.check()
    } finally {
      await rgw.startGateway()
    }
    t.match(err, { code: 'UNAVAILABLE', status: 503 })
    const message = (err as Error).message
    t.match(message, /^object storage unavailable: bucket crossdock-stores: ECONNREFUSED/)
    t.notMatch(message, /\n/, 'one line')
    t.notMatch(message, new RegExp(rgw.secretAccessKey), 'no secret')
    t.match(reason, /ECONNREFUSED/)
    t.equal(await storage.check(), undefined)
    t.equal((await storage.tags.resolve('down', 'v1'))?.value, digestOf('x'))
  })
}
