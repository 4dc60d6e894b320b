// The bucket cache's housekeeping against a real Ceph RGW (and a real redis-server for the janitor's
// election): read times batched (N hits → one write per flush; kept over an S3 outage), the janitor
// (CACHE_INACTIVE, then CACHE_MAX_SIZE by least recent read, folded atimes batches, fills whose
// holder is gone; one janitor at a time), and `crossdock cache ls|prune|verify` with STORAGE=s3.
// Objects are seeded directly with S3Bucket + CacheKeys; read times through atimes batches written
// here, and the janitor's clock set days ahead (LastModified cannot be set).
// Address 127.0.0.43: RGW (mon :3300, radosgw :7480, OSD 6800–7300) and redis-server :6379.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { requirePrivateNetns, createScope, waitFor } from '../../helpers/e2e/index.js'
import { startBucketPeers } from '../../helpers/bucket-peers.js'
import { ensureBuilt, runCli } from '../ops/built-cli.js'
import { loadConfig, type S3Config } from '../../../src/config/index.js'
import { S3Bucket } from '../../../src/objects/s3-bucket.js'
import { CacheKeys } from '../../../src/cache/s3/cache-keys.js'
import { BatchedReadTimes } from '../../../src/cache/s3/batched-read-times.js'
import { BucketJanitor } from '../../../src/cache/s3/bucket-janitor.js'
import { RedisFillLock } from '../../../src/cluster/redis-fill-lock.js'
import { LocalFillLock } from '../../../src/cluster/fill-lock.js'
import { parseDigest, type Digest } from '../../../src/oci/digest.js'

const ADDRESS = '127.0.0.43'
const BUCKET = 'crossdock-cache'
const DAY = 86_400_000

// One gateway for every case, and one case stops it: strictly one case at a time.
t.jobs = 1

function digestOf (bytes: Buffer): Digest {
  return parseDigest(`sha256:${createHash('sha256').update(bytes).digest('hex')}`)
}

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'bucket-hk')
  const { rgw, redis } = await startBucketPeers(scope, m => { t.comment(m) }, { address: ADDRESS, bucket: BUCKET })
  await ensureBuilt()

  let cases = 0
  const env = (prefix: string): Record<string, string> => ({
    STORAGE: 's3', S3_ENDPOINT: rgw.endpoint, S3_BUCKET: BUCKET, S3_ACCESS_KEY_ID: rgw.accessKeyId, S3_SECRET_ACCESS_KEY: rgw.secretAccessKey, S3_PREFIX: prefix, LOG_LEVEL: 'silent',
  })
  /** A fresh prefix per case: a bucket cache of its own, starting empty. */
  const fresh = (): { prefix: string, config: S3Config, bucket: S3Bucket, keys: CacheKeys } => {
    const prefix = `case-${++cases}`
    const storage = loadConfig(env(prefix)).storage
    if (storage.kind !== 's3') throw new Error('expected s3')
    const bucket = new S3Bucket(storage)
    scope.defer('close bucket', () => { bucket.destroy() })
    return { prefix, config: storage, bucket, keys: new CacheKeys(prefix) }
  }
  const keysUnder = async (bucket: S3Bucket, prefix: string): Promise<string[]> => {
    const out: string[] = []
    for await (const o of bucket.list(prefix)) out.push(o.key)
    return out
  }
  const seedBlob = async (bucket: S3Bucket, keys: CacheKeys, size: number, repository = 'library/alpine'): Promise<{ digest: Digest, bytes: Buffer }> => {
    const bytes = randomBytes(size)
    const digest = digestOf(bytes)
    await bucket.put(keys.blob(digest), bytes, { metadata: { host: 'registry-1.docker.io', repository } })
    return { digest, bytes }
  }
  const batch = async (bucket: S3Bucket, keys: CacheKeys, replica: string, at: number, reads: Record<string, number>): Promise<string> => {
    const key = keys.atimeBatch(replica, at)
    await bucket.put(key, JSON.stringify(reads))
    return key
  }

  t.test('read times: N hits make one write per flush; a failed write keeps them for the next', async t => {
    const { bucket, keys } = fresh()
    const times = new BatchedReadTimes({ bucket, keys, replicaId: 'replica-a', flushEveryMs: 3_600_000, maxBatch: 100 })
    t.teardown(async () => { await times.close() })
    const digests = [randomBytes(8), randomBytes(8), randomBytes(8)].map(digestOf)
    for (let i = 0; i < 500; i++) times.recordRead(digests[i % 3], 1_000_000 + i)
    t.same(await keysUnder(bucket, keys.atimesPrefix), [], 'nothing written per hit')
    await times.flush()
    const written = await keysUnder(bucket, keys.atimesPrefix)
    t.equal(written.length, 1, '500 hits, one object')
    t.match(written[0], /\/atimes\/replica-a\/\d{16}-0\.json$/)
    t.same(JSON.parse(String(await bucket.getBytes(written[0]))), { [digests[0].value]: 1_000_498, [digests[1].value]: 1_000_499, [digests[2].value]: 1_000_497 }, 'the latest read of each digest')
    await times.flush()
    t.equal((await keysUnder(bucket, keys.atimesPrefix)).length, 1, 'nothing pending, nothing written')

    // maxBatch distinct digests flush without waiting for the timer.
    const eager = new BatchedReadTimes({ bucket, keys, replicaId: 'replica-b', flushEveryMs: 3_600_000, maxBatch: 2 })
    t.teardown(async () => { await eager.close() })
    eager.recordRead(digests[0], 5)
    eager.recordRead(digests[0], 6)
    t.equal(eager.written, 0)
    eager.recordRead(digests[1], 7)
    await waitFor('the size-triggered flush', () => eager.written === 1, { timeoutMs: 10_000, intervalMs: 10 })

    await rgw.stopGateway()
    times.recordRead(digests[0], 2_000_000)
    await times.flush()
    t.equal(times.written, 1, 'the gateway is down: not written')
    await rgw.startGateway()
    times.recordRead(digests[1], 2_000_001)
    await times.flush()
    t.equal(times.written, 2)
    const last = (await keysUnder(bucket, `${keys.atimesPrefix}replica-a/`)).sort().pop() ?? ''
    t.same(JSON.parse(String(await bucket.getBytes(last))), { [digests[0].value]: 2_000_000, [digests[1].value]: 2_000_001 }, 'the read recorded during the outage came along')
  })

  t.test('janitor: CACHE_INACTIVE, then CACHE_MAX_SIZE by least recent read; batches folded, reads kept', async t => {
    const { bucket, keys } = fresh()
    const [a, b, c, d, e] = await Promise.all([1000, 1000, 1000, 1000, 1000].map(async n => await seedBlob(bucket, keys, n)))
    const manifest = Buffer.from('{"schemaVersion":2}')
    const m = digestOf(manifest)
    await bucket.put(keys.manifest(m), manifest)
    const now = Date.now() + 30 * DAY
    const batches = [
      await batch(bucket, keys, 'replica-1', 1, { [a.digest.value]: now - 1 * DAY, [b.digest.value]: now - 2 * DAY }),
      await batch(bucket, keys, 'replica-2', 2, { [c.digest.value]: now - 3 * DAY, [a.digest.value]: now - 5 * DAY }),
      await batch(bucket, keys, 'replica-2', 3, { [d.digest.value]: now - 4 * DAY, [m.value]: now - 3_600_000 }),
    ]
    await bucket.put(keys.atimeBatch('replica-3', 4), 'not json')
    const janitor = new BucketJanitor({ bucket, keys, fillLock: new LocalFillLock(), replicaId: 'janitor-1', maxSize: 2_500, inactiveMs: 7 * DAY, now: () => now })
    const r = await janitor.run()
    t.equal(r.outcome, 'done')
    t.same(r.inactive.map(x => x.digest.value), [e.digest.value], 'never read: inactive (its publish is 30 days old)')
    t.same(r.forSize.map(x => x.digest.value), [d.digest.value, c.digest.value], 'then the least recently read, until the rest fits')
    t.equal(r.bytesBefore, 5_000 + manifest.length)
    t.equal(r.bytesAfter, 2_000 + manifest.length)
    t.equal(r.batchesFolded, 4, 'three batches and the unreadable one')
    const left = await keysUnder(bucket, keys.root)
    t.same(left.filter(k => !k.includes('/atimes/')).sort(), [keys.blob(a.digest), keys.blob(b.digest), keys.manifest(m)].sort())
    const atimes = left.filter(k => k.includes('/atimes/'))
    t.equal(atimes.length, 1, 'the folded batches replaced by one')
    t.notOk(batches.some(k => atimes.includes(k)))
    t.match(atimes[0], /\/atimes\/janitor-1\//)
    t.same(JSON.parse(String(await bucket.getBytes(atimes[0]))), { [a.digest.value]: now - DAY, [b.digest.value]: now - 2 * DAY, [m.value]: now - 3_600_000 }, 'the reads of what is kept')

    // A second run a day later: the folded reads still count (a's LastModified alone is 31 days old).
    const later = new BucketJanitor({ bucket, keys, fillLock: new LocalFillLock(), replicaId: 'janitor-1', maxSize: 2_500, inactiveMs: 7 * DAY, now: () => now + DAY })
    const again = await later.run()
    t.same([again.inactive.length, again.forSize.length, again.entries], [0, 0, 3], 'nothing more to delete')
    t.equal((await keysUnder(bucket, keys.atimesPrefix)).length, 1, 'still one folded batch')
  })

  t.test('janitor: a lease lost midway stops the deletions', async t => {
    const { bucket, keys } = fresh()
    await Promise.all([1, 2, 3, 4].map(async () => await seedBlob(bucket, keys, 100)))
    // The janitor's lease, as a FillLock lets it go after the second deletion (another replica took over).
    let checks = 0
    let released = 0
    const losing = new LocalFillLock()
    losing.elect = async () => ({ role: 'leader', lease: { token: 'janitor-token', held: () => ++checks <= 2, release: async () => { released++ } } })
    const r = await new BucketJanitor({ bucket, keys, fillLock: losing, replicaId: 'janitor-1', maxSize: 0, inactiveMs: 0 }).run()
    t.equal(r.outcome, 'lost')
    t.equal(r.forSize.length, 2, 'two deleted while the lease was held, then it stopped')
    t.equal((await keysUnder(bucket, keys.blobsPrefix)).length, 2)
    t.equal(released, 1, 'the lease is given back all the same')
  })

  t.test('janitor: one at a time cluster-wide; fills whose holder is gone are cleared once old', async t => {
    const { bucket, keys } = fresh()
    const lock = (name: string): RedisFillLock => {
      const l = new RedisFillLock({ url: redis.url, replicaId: name, keyPrefix: `${keys.prefix}:`, commandTimeoutMs: 500 })
      t.teardown(async () => { await l.close() })
      return l
    }
    const mine = lock('janitor-a')
    const other = lock('replica-b')
    await waitFor('redis', () => mine.coordinated() && other.coordinated(), { timeoutMs: 10_000, intervalMs: 10 })
    const [x, y] = [digestOf(randomBytes(8)), digestOf(randomBytes(8))]
    const fillY = await other.elect(y.value)
    if (fillY.role !== 'leader') throw new Error('expected to lead the fill of y')
    const dead = 'dead-token.replica-x'
    for (const [digest, token] of [[x, dead], [y, fillY.lease.token]] as const) {
      await bucket.put(keys.fillMeta(digest, token), '{}')
      await bucket.put(keys.fillPart(digest, token, 0), randomBytes(100))
    }
    const janitor = (opts: { fillMaxAgeMs: number }): BucketJanitor =>
      new BucketJanitor({ bucket, keys, fillLock: mine, replicaId: 'janitor-a', maxSize: 1 << 30, inactiveMs: 0, now: () => Date.now() + 2 * 3_600_000, ...opts })

    const busy = await other.elect('janitor')
    t.equal((await janitor({ fillMaxAgeMs: 3_600_000 }).run()).outcome, 'skipped', 'another replica runs the janitor')
    t.equal((await keysUnder(bucket, keys.fillsPrefix)).length, 4, 'and nothing was touched')
    if (busy.role === 'leader') await busy.lease.release()

    t.same((await janitor({ fillMaxAgeMs: 3 * 3_600_000 }).run()).fillsDeleted, [], 'fills younger than the bound stay')
    const r = await janitor({ fillMaxAgeMs: 3_600_000 }).run()
    t.same(r.fillsDeleted, [keys.fill(x, dead)], 'the fill nobody holds goes; the held one stays, however old')
    t.same((await keysUnder(bucket, keys.fillsPrefix)).sort(), [keys.fillMeta(y, fillY.lease.token), keys.fillPart(y, fillY.lease.token, 0)].sort())
    await fillY.lease.release()
    t.same((await janitor({ fillMaxAgeMs: 3_600_000 }).run()).fillsDeleted, [keys.fill(y, fillY.lease.token)], 'released: cleared at the next run')
    t.same(await keysUnder(bucket, keys.fillsPrefix), [])
  })

  t.test('crossdock cache ls | prune | verify against the bucket', async t => {
    const { prefix, bucket, keys } = fresh()
    const small = await seedBlob(bucket, keys, 2_000, 'library/alpine')
    const big = await seedBlob(bucket, keys, 200_000, 'library/nginx')
    const other = await seedBlob(bucket, keys, 50_000, 'library/nginx')
    const manifest = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}')
    const m = digestOf(manifest)
    await bucket.put(keys.manifest(m), manifest)
    await bucket.put(keys.tag({ host: 'registry-1.docker.io', repository: 'library/nginx', tag: 'latest', accept: '' }), '{}')
    const cenv = env(prefix)

    const ls = await runCli(['cache', 'ls'], cenv)
    t.equal(ls.code, 0, ls.stderr)
    t.match(ls.stdout, `cache:        s3://${BUCKET}/${prefix}/cache/`)
    t.match(ls.stdout, `(${2_000 + 200_000 + 50_000 + manifest.length} bytes) in 5 entries`)
    t.match(ls.stdout, /by kind: +3 blobs \(.*\), 1 manifests \(.*\), 1 tags/)
    t.match(ls.stdout, /\n +\S+ \S+ +2 +registry-1\.docker\.io\/library\/nginx\n +\S+ \S+ +1 +registry-1\.docker\.io\/library\/alpine\n/, 'biggest first, names from the objects\' metadata')
    const json = JSON.parse((await runCli(['cache', 'ls', '--json', '--top', '1'], cenv)).stdout)
    t.same(json.repositories.map((r: { repository: string }) => r.repository), ['registry-1.docker.io/library/nginx'])

    // A replica recorded reads of `other` and the manifest; small and big were never read since
    // their publish. 50k leaves room for other and the manifest only, whichever of the two goes first.
    await batch(bucket, keys, 'replica-1', Date.now(), { [other.digest.value]: Date.now(), [m.value]: Date.now() })
    const dry = await runCli(['cache', 'prune', '--max-size', '50k', '--dry-run'], cenv)
    t.match(dry.stdout, /would remove 2 entries/)
    t.equal((await keysUnder(bucket, keys.blobsPrefix)).length, 3, 'dry run changed nothing')
    const sized = await runCli(['cache', 'prune', '--max-size', '50k'], cenv)
    t.equal(sized.code, 0, sized.stderr)
    t.match(sized.stdout, `removed blob ${big.digest.value} registry-1.docker.io/library/nginx`)
    t.match(sized.stdout, `removed blob ${small.digest.value} registry-1.docker.io/library/alpine`)
    t.notMatch(sized.stdout, other.digest.value, 'read recently: kept')
    t.match(sized.stdout, /removed 2 entries, .*; 2 entries, .* left/)
    t.same((await keysUnder(bucket, keys.blobsPrefix)), [keys.blob(other.digest)])
    t.equal((await keysUnder(bucket, keys.atimesPrefix)).length, 1, 'prune leaves the batches to the janitor')

    const clean = await runCli(['cache', 'verify'], cenv)
    t.equal(clean.code, 0, clean.stderr)
    t.match(clean.stdout, /verified 2 files .*: 2 ok, 0 bad/)
    const corrupt = Buffer.from(other.bytes)
    corrupt[1234] ^= 0xff
    await bucket.put(keys.blob(other.digest), corrupt, { metadata: { host: 'registry-1.docker.io', repository: 'library/nginx' } })
    const dryVerify = await runCli(['cache', 'verify', '--dry-run'], cenv)
    t.equal(dryVerify.code, 1, 'dry run reports with exit 1')
    t.match(dryVerify.stdout, `would remove blob ${other.digest.value} registry-1.docker.io/library/nginx: content hashes to sha256:${digestOf(corrupt).hex}`)
    const fixed = await runCli(['cache', 'verify'], cenv)
    t.equal(fixed.code, 0)
    t.match(fixed.stdout, /verified 2 files .*: 1 ok, 1 bad and removed/)
    t.same(await keysUnder(bucket, keys.blobsPrefix), [], 'the corrupt blob is gone: the next pull fetches it again')
    t.same(await keysUnder(bucket, keys.manifestsPrefix), [keys.manifest(m)])
  })
}
