// `crossdock gc` on the bucket (STORAGE=s3), on a real Ceph RGW: unreferenced blobs go, referenced
// and recently retained ones stay, dry-run prints what the real run does; an upload in progress on
// another replica survives and completes; and the gc/push handshake (s3-content-clock.ts), each
// interleaving forced with hooks on the buckets: a push that retains a blob while gc decides
// either keeps it or learns it is gone, and an upload whose content gc takes is published again.
// Then the built CLI against a running replica (another process).
// One RGW for the whole file, on this file's address 127.0.0.45.
import t, { type Test } from 'tap'
import { Readable } from 'node:stream'
import { setTimeout as delay } from 'node:timers/promises'
import { S3Client, CreateBucketCommand } from '@aws-sdk/client-s3'
import { requirePrivateNetns, createScope, startCrossdock } from '../../helpers/e2e/index.js'
import { startRgw, type Rgw } from '../../helpers/rgw.js'
import { loadConfig, type S3Config } from '../../../src/config/index.js'
import { createS3Storage, type S3Storage } from '../../../src/registry/storage/s3-storage.js'
import { S3Bucket } from '../../../src/objects/s3-bucket.js'
import { parseDigest, type Digest } from '../../../src/oci/digest.js'
import { runGc } from '../../../src/registry/gc.js'
import { createSilentLogger } from '../../../src/log.js'
import { runCli } from '../ops/built-cli.js'
import { digestOf, patterned, pushChunked, sendAll } from './hosted-store-behaviours.js'

const ADDRESS = '127.0.0.45'
const BUCKET = 'crossdock-gc'
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

t.jobs = 1

/**
 * Waits until the wall clock is `ms` past `since`. Not an ordering sleep: S3 keeps times in whole
 * seconds, and "old" versus "recently retained" needs that many seconds between two writes.
 */
async function clockPast (since: number, ms: number): Promise<void> {
  while (Date.now() < since + ms) await delay(Math.min(100, since + ms - Date.now()))
}

/** An S3Bucket whose calls run hooks: `after*` once the call answered, `beforeDelete` before it is sent. */
class HookedBucket extends S3Bucket {
  afterPut?: (key: string) => Promise<void>
  afterHead?: (key: string, found: boolean) => Promise<void>
  beforeDelete?: (key: string) => Promise<void>

  override async put (key: string, body: Buffer | string, opts: { ifNoneMatch?: boolean, contentType?: string } = {}): Promise<boolean> {
    const r = await super.put(key, body, opts)
    await this.afterPut?.(key)
    return r
  }

  override async head (key: string): Promise<Awaited<ReturnType<S3Bucket['head']>>> {
    const r = await super.head(key)
    await this.afterHead?.(key, r !== undefined)
    return r
  }

  override async delete (key: string): Promise<void> {
    await this.beforeDelete?.(key)
    await super.delete(key)
  }
}

function manifestOf (config: { digest: string, size: number }, layers: Array<{ digest: string, size: number }>): Buffer {
  return Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: layers.map(l => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l })),
  }))
}

/** A one-shot signal a hook resolves and the test awaits. */
function signal (): { promise: Promise<void>, fire: () => void } {
  let fire = (): void => {}
  const promise = new Promise<void>(resolve => { fire = resolve })
  return { promise, fire }
}

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 's3-gc')
  const rgw: Rgw = await startRgw(ADDRESS, scope.path('rgw'))
  scope.defer('stop rgw', rgw.stop)
  t.comment(`RGW ready in ${rgw.startMs} ms`)
  const admin = new S3Client({ region: rgw.region, endpoint: rgw.endpoint, forcePathStyle: true, credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey } })
  scope.defer('close admin client', () => admin.destroy())
  await admin.send(new CreateBucketCommand({ Bucket: BUCKET }))
  const s3Env = { STORAGE: 's3', S3_ENDPOINT: rgw.endpoint, S3_BUCKET: BUCKET, S3_ACCESS_KEY_ID: rgw.accessKeyId, S3_SECRET_ACCESS_KEY: rgw.secretAccessKey }

  let prefixes = 0
  const freshPrefix = (): string => `gc-${++prefixes}`
  const s3Config = (prefix: string): S3Config => {
    const c = loadConfig({ ...s3Env, S3_PREFIX: prefix }).storage
    if (c.kind !== 's3') throw new Error('expected s3')
    return c
  }
  const open = (t: Test, prefix: string, bucket?: S3Bucket): S3Storage => {
    const s = createS3Storage(s3Config(prefix), {}, bucket)
    t.teardown(() => { s.close(); bucket?.destroy() }) // a bucket passed in stays the caller's
    return s
  }
  const gc = async (storage: S3Storage, opts: { dryRun?: boolean, graceMs: number }): Promise<string[]> => {
    const lines: string[] = []
    await runGc({ storage, uploadMaxAgeMs: 3_600_000, log: createSilentLogger(), dryRun: opts.dryRun ?? false, deleteUntagged: false, graceMs: opts.graceMs, out: l => lines.push(l) })
    return lines
  }

  t.test('unreferenced blobs go; referenced and recently retained stay; an upload in progress on another replica completes', async t => {
    const prefix = freshPrefix()
    const [a, b, collector] = [open(t, prefix), open(t, prefix), open(t, prefix)]
    const layer = await pushChunked(a, 'team/app', patterned(3 * 2 ** 20, 1), 2)
    const config = await pushChunked(a, 'team/app', Buffer.from('{"os":"linux"}'), 1)
    const manifest = manifestOf(config, [layer])
    await a.manifests.put('team/app', { digest: parseDigest(digestOf(manifest)), mediaType: OCI_MANIFEST, body: manifest })
    await a.tags.set('team/app', 'v1', parseDigest(digestOf(manifest)))
    const orphan = await pushChunked(a, 'team/app', patterned(100_000, 2), 1)
    const mounted = await pushChunked(a, 'team/app', patterned(100_000, 3), 1)
    const written = Date.now()
    // Replica b starts a chunked upload and sends its first chunk; the rest comes after gc.
    const pending = patterned(9 * 2 ** 20, 4)
    const session = await b.uploads.create('team/app')
    await b.uploads.append('team/app', session.id, Readable.from([pending.subarray(0, 6 * 2 ** 20)]), { start: 0 })

    await clockPast(written, 4000)
    // A cross-repository mount on b retains `mounted` (no manifest references it).
    t.ok(await b.blobs.link('team/other', parseDigest(mounted.digest)), 'mounted on replica b')

    const dry = await gc(collector, { dryRun: true, graceMs: 2500 })
    t.same(dry, [
      `would remove blob ${orphan.digest} (100000 bytes)`,
      'kept 1 unreferenced blob(s) written or used since the cutoff',
      'dry run: would remove 1 blob(s), 100000 bytes reclaimable',
    ], 'dry run: only the orphan')
    t.ok(await a.blobs.stat('team/app', parseDigest(orphan.digest)), 'dry run removed nothing')
    const real = await gc(collector, { graceMs: 2500 })
    t.same(real, [
      `removed blob ${orphan.digest} (100000 bytes)`,
      'kept 1 unreferenced blob(s) written or used since the cutoff',
      'removed 1 blob(s), 100000 bytes reclaimed',
    ], 'the same lines, done')

    t.equal(await a.blobs.contentInfo(parseDigest(orphan.digest)), undefined, 'the orphan is gone from the bucket')
    for (const [what, d] of [['layer', layer.digest], ['config', config.digest], ['manifest', digestOf(manifest)], ['recently retained', mounted.digest]]) {
      t.ok(await b.blobs.contentInfo(parseDigest(d)), `${what} stays`)
    }
    t.equal((await b.uploads.get('team/app', session.id))?.offset, 6 * 2 ** 20, 'the upload in progress is intact')
    t.equal(await a.uploads.append('team/app', session.id, Readable.from([pending.subarray(6 * 2 ** 20)]), { start: 6 * 2 ** 20 }), pending.length)
    const done = await b.uploads.complete('team/app', session.id, parseDigest(digestOf(pending)))
    t.same(done, { digest: digestOf(pending), size: pending.length }, 'and completes after gc')
    t.equal(digestOf((await sendAll(a, done.digest)).bytes), done.digest)
  })

  /** An old, unreferenced blob in `prefix` (written, then the clock moved on): what gc may take. */
  const oldBlob = async (t: Test, prefix: string, seed: number): Promise<{ digest: Digest, since: number }> => {
    const writer = open(t, prefix)
    const blob = await pushChunked(writer, 'race/app', patterned(50_000, seed), 1)
    await clockPast(Date.now(), 3000)
    return { digest: parseDigest(blob.digest), since: Date.now() - 1000 }
  }

  t.test('a push retains the blob after gc\'s first look: gc keeps it, the push sees it', async t => {
    const prefix = freshPrefix()
    const { digest, since } = await oldBlob(t, prefix, 10)
    const gcBucket = new HookedBucket(s3Config(prefix))
    const pushBucket = new HookedBucket(s3Config(prefix))
    const [collector, pusher] = [open(t, prefix, gcBucket), open(t, prefix, pushBucket)]
    const markerWritten = signal()
    pushBucket.afterPut = async key => { if (key.includes('/retained/')) markerWritten.fire() }
    let push: Promise<unknown> | undefined
    // gc has looked once (old) and raised its flag; the push's marker lands before gc's second look.
    gcBucket.afterPut = async key => {
      if (!key.includes('/sweeping/')) return
      push = pusher.blobs.stat('race/app', digest, { retain: true })
      await markerWritten.promise
    }
    t.equal(await collector.blobs.remove(digest, since), false, 'gc keeps it')
    t.same(await push, { digest: digest.value, size: 50_000 }, 'the push waited for the verdict and has the blob')
    t.ok(await pusher.blobs.contentInfo(digest), 'still in the bucket')
  })

  t.test('a push retains the blob after gc decided: the push learns it is gone', async t => {
    const prefix = freshPrefix()
    const { digest, since } = await oldBlob(t, prefix, 11)
    const gcBucket = new HookedBucket(s3Config(prefix))
    const pushBucket = new HookedBucket(s3Config(prefix))
    const [collector, pusher] = [open(t, prefix, gcBucket), open(t, prefix, pushBucket)]
    const sawFlag = signal()
    pushBucket.afterHead = async (key, found) => { if (key.includes('/sweeping/') && found) sawFlag.fire() }
    let push: Promise<unknown> | undefined
    // gc looked twice (old both times) and is about to delete; the push's marker comes now, too late.
    gcBucket.beforeDelete = async key => {
      if (!key.includes('/blobs/') || push !== undefined) return
      push = pusher.blobs.stat('race/app', digest, { retain: true })
      await sawFlag.promise
    }
    t.equal(await collector.blobs.remove(digest, since), true, 'gc removes it')
    t.equal(await push, undefined, 'the push is told the blob is gone (its manifest PUT answers MANIFEST_BLOB_UNKNOWN)')
    t.equal(await pusher.blobs.contentInfo(digest), undefined)
  })

  t.test('an upload of content gc takes while the upload completes: published again from the session', async t => {
    const prefix = freshPrefix()
    const { digest, since } = await oldBlob(t, prefix, 12)
    const bytes = patterned(50_000, 12)
    const gcBucket = new HookedBucket(s3Config(prefix))
    const pushBucket = new HookedBucket(s3Config(prefix))
    const [collector, pusher] = [open(t, prefix, gcBucket), open(t, prefix, pushBucket)]
    const session = await pusher.uploads.create('race/other')
    await pusher.uploads.append('race/other', session.id, Readable.from([bytes]), { start: 0 })
    const sawFlag = signal()
    pushBucket.afterHead = async (key, found) => { if (key.includes('/sweeping/') && found) sawFlag.fire() }
    let complete: Promise<unknown> | undefined
    // The upload's publish finds the content there (keeps it), then its retain meets gc's flag.
    gcBucket.beforeDelete = async key => {
      if (!key.includes('/blobs/') || complete !== undefined) return
      complete = pusher.uploads.complete('race/other', session.id, digest)
      await sawFlag.promise
    }
    t.equal(await collector.blobs.remove(digest, since), true, 'gc removed the old copy')
    t.same(await complete, { digest: digest.value, size: bytes.length }, 'the upload completes')
    t.equal(digestOf((await sendAll(pusher, digest.value)).bytes), digest.value, 'with its bytes in the bucket')
    t.ok(await pusher.blobs.stat('race/other', digest), 'linked')
  })

  t.test('the built CLI collects the bucket while a replica (another process) has an upload in progress', async t => {
    const prefix = freshPrefix()
    const env = { ...s3Env, S3_PREFIX: prefix }
    const replica = await startCrossdock(scope, { host: ADDRESS, name: 'replica', env })
    t.teardown(replica.stop)
    const url = (path: string): string => `http://${replica.registryAddress}${path}`
    const orphan = patterned(70_000, 20)
    t.equal((await fetch(url(`/v2/cli/app/blobs/uploads/?digest=${digestOf(orphan)}`), { method: 'POST', body: orphan })).status, 201)
    const written = Date.now()
    const post = await fetch(url('/v2/cli/app/blobs/uploads/'), { method: 'POST' })
    const pending = patterned(200_000, 21)
    const patch = await fetch(url(post.headers.get('location') ?? ''), { method: 'PATCH', body: pending.subarray(0, 120_000), headers: { 'content-type': 'application/octet-stream', 'content-range': '0-119999' } })
    t.equal(patch.status, 202)
    await clockPast(written, 2000)

    const dry = await runCli(['gc', '--dry-run', '--grace=1s'], env, { timeoutMs: 60_000 })
    t.equal(dry.code, 0, dry.stderr)
    t.equal(dry.stdout, `would remove blob ${digestOf(orphan)} (70000 bytes)\ndry run: would remove 1 blob(s), 70000 bytes reclaimable\n`)
    const real = await runCli(['gc', '--grace=1s'], env, { timeoutMs: 60_000 })
    t.equal(real.code, 0, real.stderr)
    t.equal(real.stdout, `removed blob ${digestOf(orphan)} (70000 bytes)\nremoved 1 blob(s), 70000 bytes reclaimed\n`)
    t.equal((await fetch(url(`/v2/cli/app/blobs/${digestOf(orphan)}`), { method: 'HEAD' })).status, 404, 'the orphan is gone')

    const location = patch.headers.get('location') ?? ''
    const put = await fetch(url(`${location}${location.includes('?') ? '&' : '?'}digest=${digestOf(pending)}`), {
      method: 'PUT', body: pending.subarray(120_000), headers: { 'content-type': 'application/octet-stream', 'content-range': '120000-199999' },
    })
    t.equal(put.status, 201, 'the upload in progress completes after gc')
    const got = Buffer.from(await (await fetch(url(`/v2/cli/app/blobs/${digestOf(pending)}`))).arrayBuffer())
    t.equal(digestOf(got), digestOf(pending))
  })
}
