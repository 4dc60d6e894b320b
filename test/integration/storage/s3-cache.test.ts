// The pull-through cache on the bucket (STORAGE=s3, issue 17) against a real Ceph RGW: the cache
// contract suite unchanged on openBucketCache, then two and three in-process apps (each its own
// CACHE_DIR, one bucket) with scripted fill locks, a counting fake upstream and the fill hooks to
// order things: a follower streams the leader's parts before anything is published, a fresh replica
// is served from the bucket, a leader dying mid-fill aborts its followers and the next request
// fills again, a corrupt body publishes nothing, LocalFillLock replicas both fetch and one object is
// published, and a stopped gateway costs only sharing.
// This file's addresses: 127.0.0.41 (RGW), 127.0.0.42 (fake upstream, apps).
import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { S3Client, CreateBucketCommand, ListObjectsV2Command, GetObjectCommand } from '@aws-sdk/client-s3'
import { requirePrivateNetns, createScope } from '../../helpers/e2e/index.js'
import { startRgw } from '../../helpers/rgw.js'
import { FakeUpstream, sha256 } from '../../helpers/fake-upstream.js'
import { startApp, type StartedApp } from '../../helpers/start-app.js'
import { loadConfig, type S3Config } from '../../../src/config/index.js'
import { createSilentLogger } from '../../../src/log.js'
import { openBucketCache } from '../../../src/cache/s3/open-bucket-cache.js'
import type { BucketFillStep } from '../../../src/cache/s3/bucket-fill-writer.js'
import type { CacheStore } from '../../../src/cache/stores.js'
import type { FillElection, FillLock } from '../../../src/cluster/fill-lock.js'
import { parseDigest } from '../../../src/oci/digest.js'
import { cacheStoreContract } from '../../contracts/cache-stores.js'

const RGW_ADDRESS = '127.0.0.41'
const ADDRESS = '127.0.0.42'
const BUCKET = 'crossdock-cache'
const HUB = 'registry-1.docker.io'
const MIB = 1 << 20

t.jobs = 1

/** A FillLock that answers what the test says: the queued elections in order (then: lead), and `holderIs`. */
class ScriptedLock implements FillLock {
  readonly elections: FillElection[] = []
  holderIs: string | null | undefined = undefined
  private n = 0
  lead (token: string, held = (): boolean => true): FillElection { return { role: 'leader', lease: { token, held, release: async () => {} } } }
  async elect (): Promise<FillElection> { return this.elections.shift() ?? this.lead(`scripted-${++this.n}`) }
  async holder (): Promise<string | null | undefined> { return this.holderIs }
  coordinated (): boolean { return true }
  async close (): Promise<void> {}
}

/** Resolves when `step` happens for `digest` (the writer hook of one app). */
class WriterSteps {
  private readonly waiters: Array<{ step: BucketFillStep, digest: string, resolve: () => void }> = []
  readonly hook = (step: BucketFillStep, info: { digest: string }): void => {
    for (const w of this.waiters.filter(w => w.step === step && w.digest === info.digest)) { this.waiters.splice(this.waiters.indexOf(w), 1); w.resolve() }
  }

  next (step: BucketFillStep, digest: string): Promise<void> {
    return new Promise(resolve => this.waiters.push({ step, digest, resolve }))
  }
}

function patterned (n: number, seed: number): Buffer {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed + (i >> 13)) & 0xff
  return b
}

/** Reads a response body, resolving with what arrived and whether it ended cleanly; `onBytes` sees the running count. */
async function drain (res: Response, onBytes?: (n: number) => void): Promise<{ bytes: Buffer, clean: boolean }> {
  const chunks: Buffer[] = []
  let n = 0
  try {
    for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) { chunks.push(Buffer.from(c)); n += c.length; onBytes?.(n) }
    return { bytes: Buffer.concat(chunks), clean: true }
  } catch {
    return { bytes: Buffer.concat(chunks), clean: false }
  }
}

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 's3-cache')
  const rgw = await startRgw(RGW_ADDRESS, scope.path('rgw'))
  scope.defer('stop rgw', rgw.stop)
  t.comment(`RGW ready in ${rgw.startMs} ms`)
  const admin = new S3Client({ region: rgw.region, endpoint: rgw.endpoint, forcePathStyle: true, credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey } })
  scope.defer('close admin client', () => admin.destroy())
  await admin.send(new CreateBucketCommand({ Bucket: BUCKET }))
  const s3Env = (prefix: string): Record<string, string> => ({ STORAGE: 's3', S3_ENDPOINT: rgw.endpoint, S3_BUCKET: BUCKET, S3_ACCESS_KEY_ID: rgw.accessKeyId, S3_SECRET_ACCESS_KEY: rgw.secretAccessKey, S3_PREFIX: prefix })
  const s3Config = (prefix: string): S3Config => loadConfig(s3Env(prefix)).storage as S3Config
  let prefixes = 0
  const freshPrefix = (): string => `cache-case-${++prefixes}`
  const keysUnder = async (prefix: string): Promise<string[]> => {
    const keys: string[] = []
    let token: string | undefined
    do {
      const r = await admin.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${prefix}/`, ContinuationToken: token }))
      for (const o of r.Contents ?? []) keys.push(o.Key!.slice(prefix.length + 1))
      token = r.IsTruncated === true ? r.NextContinuationToken : undefined
    } while (token !== undefined)
    return keys.sort()
  }
  const blobKey = (prefix: string, digest: string): string => { const hex = digest.split(':')[1]; return `${prefix}/cache/blobs/sha256/${hex.slice(0, 2)}/${hex}` }
  const objectBytes = async (key: string): Promise<Buffer> => Buffer.from(await (await admin.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToByteArray())

  // The cache contract suite, unchanged, on the bucket-backed store.
  const prefixOf = new WeakMap<CacheStore, string>()
  const openAt = async (dir: string, prefix: string): Promise<CacheStore> => {
    const s = await openBucketCache({ dir, maxSize: 1 << 30, inactiveMs: 0, minFree: 0, log: createSilentLogger(), s3: s3Config(prefix) })
    prefixOf.set(s, prefix)
    return s
  }
  const closed = new WeakSet<CacheStore>()
  cacheStoreContract(t, {
    name: 'bucket',
    make: async () => await openAt(await mkdtemp(join(tmpdir(), 'crossdock-s3-contract-')), freshPrefix()),
    teardown: async s => { if (!closed.has(s)) await s.close(); await rm(s.dir, { recursive: true, force: true }) },
    reopen: async s => { await s.close(); closed.add(s); return await openAt(s.dir, prefixOf.get(s)!) },
  })

  t.test('every hit is told to ReadTimes: local blob and manifest hits, and a blob read from the bucket', async t => {
    const prefix = freshPrefix()
    const reads: string[] = []
    const readTimes = { recordRead: (d: { value: string }, at: number) => { if (at > 0) reads.push(d.value) } }
    const open = async (): Promise<CacheStore> => {
      const dir = await mkdtemp(join(tmpdir(), 'crossdock-s3-reads-'))
      const s = await openBucketCache({ dir, maxSize: 1 << 30, inactiveMs: 0, minFree: 0, log: createSilentLogger(), s3: s3Config(prefix), readTimes })
      t.teardown(async () => { await s.close(); await rm(dir, { recursive: true, force: true }) })
      return s
    }
    const a = await open()
    const data = randomBytes(100_000)
    const d = parseDigest(sha256(data))
    const fetched = async (): Promise<{ answer: string, fill: { body: Readable, expectedSize: number } }> => ({ answer: 'upstream', fill: { body: Readable.from([data]), expectedSize: data.length } })
    const miss = await a.blobs.openOrFill(d, fetched)
    if (miss.kind === 'fill') { miss.handle.release(); await miss.fill.done }
    await a.blobs.fillsSettled()
    t.same(reads, [], 'a miss is not a read')
    const hit = await a.blobs.openOrFill(d, fetched)
    if (hit.kind === 'cached') await hit.fh.close()
    const manifest = Buffer.from('{"schemaVersion":2}')
    await a.manifests.put(parseDigest(sha256(manifest)), manifest, 'application/vnd.oci.image.manifest.v1+json')
    await a.manifests.get(parseDigest(sha256(manifest)))
    t.same(reads, [d.value, sha256(manifest)], 'local hits')
    const b = await open()
    const fromBucket = await b.blobs.openOrFill(d, async () => { throw new Error('no upstream fetch expected') })
    t.equal(fromBucket.kind, 'fill')
    if (fromBucket.kind === 'fill') { t.equal(fromBucket.leader, false, 'bucket content is served after the access check'); fromBucket.handle.release(); await fromBucket.fill.done }
    t.same(reads.slice(2), [d.value], 'a hit in the bucket')
  })

  const upstream = new FakeUpstream()
  await upstream.start(ADDRESS)
  scope.defer('stop fake upstream', async () => { await upstream.stop() })
  t.afterEach(() => { upstream.fault = undefined })

  interface Replica { app: StartedApp, cache: CacheStore, lock: ScriptedLock | undefined, steps: WriterSteps, url: (path: string) => string }
  const replica = async (t: Test, prefix: string, opts: { lock?: ScriptedLock, leaderGoneMs?: number } = {}): Promise<Replica> => {
    let cache: CacheStore | undefined
    const steps = new WriterSteps()
    const app = await startApp({ ...s3Env(prefix), LISTEN_HOST: ADDRESS, UPSTREAM_CONNECT_TO: upstream.connectTo([HUB]), CACHE_MIN_FREE: '0' }, {
      test: { fillLock: opts.lock, follow: opts.leaderGoneMs !== undefined ? { leaderGoneMs: opts.leaderGoneMs } : undefined, bucketFillHook: steps.hook, expose: p => { cache = p.cache } },
    })
    t.teardown(app.stop)
    return { app, cache: cache!, lock: opts.lock, steps, url: path => `http://${ADDRESS}:${app.registryPort}/v2/docker.io/library/app${path}` }
  }
  const blobGets = (digest: string): number => upstream.count('GET', `/blobs/${digest}`)
  /** Blob GETs answer `first` bytes, then the rest once `gate` resolves. */
  const gated = (digest: string, body: Buffer, first: number, gate: Promise<void>): void => {
    upstream.fault = async (req, res, hit) => {
      if (req.method !== 'GET' || !hit.path.endsWith(`/blobs/${digest}`)) return false
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length })
      res.write(body.subarray(0, first))
      await gate
      res.end(body.subarray(first))
      return true
    }
  }

  /**
   * Replica a leads `token`, b follows it; a's upstream body stops after 10 MiB until `open()`.
   * Resolves once b's client has received a's first part (8 MiB) — while a is still filling.
   */
  const followedMidFill = async (t: Test, size: number, seed: number, token: string, follow: { leaderGoneMs?: number, leaseHeld?: () => boolean } = {}) => {
    const prefix = freshPrefix()
    const blob = patterned(size, seed)
    const digest = upstream.addBlob(blob)
    const [lockA, lockB] = [new ScriptedLock(), new ScriptedLock()]
    lockA.elections.push(lockA.lead(token, follow.leaseHeld))
    lockB.elections.push({ role: 'follower', token })
    lockB.holderIs = token
    const a = await replica(t, prefix, { lock: lockA })
    const b = await replica(t, prefix, { lock: lockB, leaderGoneMs: follow.leaderGoneMs })
    let open!: () => void
    gated(digest, blob, 10 * MIB, new Promise(resolve => { open = resolve }))
    t.teardown(() => open())
    const firstPart = a.steps.next('part-written', digest)
    const onA = fetch(a.url(`/blobs/${digest}`)).then(async r => await drain(r))
    await firstPart
    const askedAt = Date.now()
    const resB = await fetch(b.url(`/blobs/${digest}`))
    let sawPart!: () => void
    const partSeen = new Promise<void>(resolve => { sawPart = resolve })
    const onB = drain(resB, n => { if (n >= 8 * MIB) sawPart() })
    await partSeen
    return { prefix, blob, digest, a, b, lockB, open, onA, onB, resB, partMs: Date.now() - askedAt }
  }

  t.test('a follower streams the leader\'s parts before anything is published; one upstream GET', async t => {
    const { prefix, blob, digest, a, b, open, onA, onB, resB, partMs } = await followedMidFill(t, 20 * MIB + 12345, 1, 'token-a')
    t.equal(resB.status, 200)
    t.equal(resB.headers.get('x-cache-status'), 'JOINED', 'B follows: no upstream answer of its own')
    t.same((await keysUnder(prefix)).filter(k => k.startsWith('cache/blobs/')), [], 'B has 8 MiB while A\'s upstream body is half sent and nothing is published')
    t.comment(`B's client had A's first 8 MiB part ${partMs} ms after asking`)
    const published = a.steps.next('published', digest)
    const releasedAt = Date.now()
    open()
    const [gotA, gotB] = await Promise.all([onA, onB])
    t.comment(`the remaining ${((blob.length - 10 * MIB) / MIB).toFixed(1)} MiB reached B's client ${Date.now() - releasedAt} ms after A's upstream sent them`)
    t.ok(gotA.clean && sha256(gotA.bytes) === digest, 'A\'s client: the exact bytes')
    t.ok(gotB.clean && sha256(gotB.bytes) === digest, 'B\'s client: the exact bytes')
    await published
    t.equal(blobGets(digest), 1, 'one upstream GET for both replicas')
    t.equal(sha256(await objectBytes(blobKey(prefix, digest))), digest, 'the published object hashes to the digest')
    await b.cache.blobs.fillsSettled()
    t.equal(b.cache.blobs.stat(parseDigest(digest))?.size, blob.length, 'B\'s local tier holds it')
    const again = await fetch(b.url(`/blobs/${digest}`))
    t.equal(again.headers.get('x-cache-status'), 'HIT')
    t.equal(sha256(Buffer.from(await again.arrayBuffer())), digest)

    // A fresh replica (empty CACHE_DIR) is served from the bucket.
    const c = await replica(t, prefix)
    const head = await fetch(c.url(`/blobs/${digest}`), { method: 'HEAD' })
    t.same([head.status, head.headers.get('x-cache-status'), head.headers.get('content-length'), head.headers.get('docker-content-digest')], [200, 'HIT', String(blob.length), digest], 'a HEAD: answered from the bucket\'s object')
    const hitAt = Date.now()
    const fromBucket = await fetch(c.url(`/blobs/${digest}`))
    t.equal(fromBucket.status, 200)
    t.equal(fromBucket.headers.get('x-cache-status'), 'HIT', 'the published blob came whole: a hit, not JOINED')
    t.equal(sha256(Buffer.from(await fromBucket.arrayBuffer())), digest, 'a fresh replica serves the bytes')
    t.comment(`a fresh replica served ${(blob.length / MIB).toFixed(1)} MiB from the bucket in ${Date.now() - hitAt} ms`)
    t.equal(blobGets(digest), 1, 'and asks the upstream for no GET')
    t.equal(upstream.count('HEAD', `/blobs/${digest}`) > 0, true, 'it checked access upstream (HEAD) before serving')
  })

  t.test('the leader dies mid-fill: its follower\'s client is aborted, nothing is published, the next request fills', async t => {
    const { prefix, blob, digest, a, b, lockB, onA, onB } = await followedMidFill(t, 20 * MIB + 777, 2, 'token-dies', { leaderGoneMs: 300 })
    const aFailed = a.steps.next('failed', digest)
    a.cache.blobs.inflight(parseDigest(digest))!.abort(new Error('replica A killed'))
    lockB.holderIs = null
    await aFailed
    const gotB = await onB
    t.equal(gotB.clean, false, 'B\'s client sees an aborted connection')
    t.ok(gotB.bytes.length < blob.length, `not a clean short body (${gotB.bytes.length} of ${blob.length} bytes)`)
    t.equal((await onA).clean, false)
    const keys = await keysUnder(prefix)
    t.same(keys.filter(k => k.startsWith('cache/blobs/')), [], 'nothing under blobs/')
    t.same(keys.filter(k => k.includes('/parts/')), [], 'the dead fill\'s parts are gone')
    upstream.fault = undefined
    const next = await fetch(b.url(`/blobs/${digest}`))
    t.equal(next.headers.get('x-cache-status'), 'MISS', 'B elected itself this time')
    t.equal(sha256(Buffer.from(await next.arrayBuffer())), digest)
    t.equal(blobGets(digest), 2)
    await b.cache.blobs.fillsSettled()
    t.equal(sha256(await objectBytes(blobKey(prefix, digest))), digest, 'B published it')
  })

  // Redis gone mid-fill (cluster-cache.test.ts): the leader's lease is lost and nobody can tell the follower who holds the lock.
  t.test('Redis gone mid-fill: the leader, its lease lost, still writes its parts; its follower completes', async t => {
    let held = true
    const { prefix, digest, a, lockB, open, onA, onB } = await followedMidFill(t, 20 * MIB + 99, 4, 'token-no-redis', { leaseHeld: () => held })
    held = false
    lockB.holderIs = undefined
    const published = a.steps.next('published', digest)
    open()
    const [gotA, gotB] = await Promise.all([onA, onB])
    t.ok(gotA.clean && sha256(gotA.bytes) === digest, 'A\'s client: the exact bytes')
    t.ok(gotB.clean && sha256(gotB.bytes) === digest, 'B\'s client: the exact bytes, from A\'s parts')
    await published
    t.equal(sha256(await objectBytes(blobKey(prefix, digest))), digest, 'A published it (its keys are its token\'s: fenced by key)')
    t.equal(blobGets(digest), 1)
  })

  t.test('Redis gone and the leader\'s fill fails: its follower sees the meta.json gone and aborts (no wait for PROXY_READ_TIMEOUT)', async t => {
    const { prefix, blob, digest, a, lockB, onB } = await followedMidFill(t, 20 * MIB + 55, 5, 'token-fails-no-redis', { leaderGoneMs: 300 })
    lockB.holderIs = undefined
    const aFailed = a.steps.next('failed', digest)
    a.cache.blobs.inflight(parseDigest(digest))!.abort(new Error('upstream broke'))
    await aFailed
    const gotB = await onB
    t.equal(gotB.clean, false, 'B\'s client sees an aborted connection')
    t.ok(gotB.bytes.length < blob.length, `${gotB.bytes.length} of ${blob.length} bytes`)
    t.same((await keysUnder(prefix)).filter(k => k.startsWith('cache/blobs/')), [], 'nothing under blobs/')
  })

  t.test('a leader gone before it wrote anything: its follower elects again and fetches itself', async t => {
    const prefix = freshPrefix()
    const blob = randomBytes(MIB)
    const digest = upstream.addBlob(blob)
    const lock = new ScriptedLock()
    lock.elections.push({ role: 'follower', token: 'token-never-wrote' })
    lock.holderIs = null
    const b = await replica(t, prefix, { lock, leaderGoneMs: 300 })
    const res = await fetch(b.url(`/blobs/${digest}`))
    t.equal(res.status, 200)
    t.equal(res.headers.get('x-cache-status'), 'MISS', 'the second election made it the leader')
    t.equal(sha256(Buffer.from(await res.arrayBuffer())), digest)
    t.equal(blobGets(digest), 1)
  })

  t.test('a corrupt upstream body: the client is aborted, nothing under blobs/', async t => {
    const prefix = freshPrefix()
    const blob = patterned(9 * MIB, 3)
    const digest = upstream.addBlob(blob)
    const a = await replica(t, prefix)
    upstream.fault = (req, res, hit) => {
      if (req.method !== 'GET' || !hit.path.endsWith(`/blobs/${digest}`)) return false
      const bad = Buffer.from(blob)
      bad[bad.length - 10] ^= 1
      res.writeHead(200, { 'content-length': bad.length })
      res.end(bad)
      return true
    }
    const failed = a.steps.next('failed', digest)
    const got = await drain(await fetch(a.url(`/blobs/${digest}`)))
    t.equal(got.clean, false, 'aborted, not a clean end of wrong bytes')
    await failed
    const keys = await keysUnder(prefix)
    t.same(keys.filter(k => !k.startsWith('cache/fills/')), [], 'nothing outside fills/')
    t.same(keys.filter(k => k.includes('/parts/')), [], 'the parts were deleted')
  })

  t.test('LocalFillLock: two cold replicas both fetch, both serve the bytes, one object is published', async t => {
    const prefix = freshPrefix()
    const blob = randomBytes(3 * MIB)
    const digest = upstream.addBlob(blob)
    const a = await replica(t, prefix)
    const b = await replica(t, prefix)
    const got = await Promise.all([a, b].map(async r => Buffer.from(await (await fetch(r.url(`/blobs/${digest}`))).arrayBuffer())))
    t.ok(got.every(g => sha256(g) === digest), 'both clients get the exact bytes')
    t.equal(blobGets(digest), 2, 'no coordination: each replica fetched')
    await Promise.all([a.cache.blobs.fillsSettled(), b.cache.blobs.fillsSettled()])
    const keys = await keysUnder(prefix)
    t.same(keys.filter(k => k.startsWith('cache/blobs/')), [blobKey(prefix, digest).slice(prefix.length + 1)], 'one object')
    t.equal(sha256(await objectBytes(blobKey(prefix, digest))), digest)
  })

  t.test('manifests and tags are shared: a fresh replica answers a tag STALE in an upstream outage', async t => {
    const prefix = freshPrefix()
    const img = upstream.addImage('library/app', 'shared', randomBytes(1000))
    const a = await replica(t, prefix)
    const accept = 'application/vnd.oci.image.manifest.v1+json'
    const first = await fetch(a.url('/manifests/shared'), { headers: { accept } })
    t.equal(first.status, 200)
    t.equal(sha256(Buffer.from(await first.arrayBuffer())), img.manifest.digest)
    const c = await replica(t, prefix)
    t.equal(c.cache.tags.get({ host: HUB, repository: 'library/app', tag: 'shared', accept }), undefined, 'c has no tag record of its own')
    upstream.fault = (req, res) => { if (!req.url!.includes('/manifests/')) return false; res.writeHead(503, { 'content-length': 0 }); res.end(); return true }
    // Access is per replica: c has never seen the repository public, so it does not serve it unverified.
    t.equal((await fetch(c.url('/manifests/shared'), { headers: { accept } })).status, 503, 'a replica that cannot check access refuses')
    upstream.fault = undefined
    t.equal((await fetch(c.url(`/blobs/${img.config}`))).status, 200, 'c sees the repository public (an anonymous fetch)')
    upstream.fault = (req, res) => { if (!req.url!.includes('/manifests/')) return false; res.writeHead(503, { 'content-length': 0 }); res.end(); return true }
    const stale = await fetch(c.url('/manifests/shared'), { headers: { accept } })
    t.equal(stale.status, 200)
    t.equal(stale.headers.get('x-cache-status'), 'STALE', 'the tag record and manifest came from the bucket')
    t.equal(sha256(Buffer.from(await stale.arrayBuffer())), img.manifest.digest)
    t.equal(upstream.count('GET', `/manifests/${img.manifest.digest}`), 1, 'the manifest was fetched by a only')
  })

  t.test('RGW stopped: a blob is served from the upstream, a known tag STALE; no stack, no hang', async t => {
    const prefix = freshPrefix()
    const img = upstream.addImage('library/app', 'down', randomBytes(2 * MIB))
    const a = await replica(t, prefix)
    const accept = 'application/vnd.oci.image.manifest.v1+json'
    t.equal((await fetch(a.url('/manifests/down'), { headers: { accept } })).status, 200)
    await rgw.stopGateway()
    t.teardown(rgw.startGateway)
    const blob = await fetch(a.url(`/blobs/${img.layer}`))
    t.equal(blob.status, 200)
    t.equal(sha256(Buffer.from(await blob.arrayBuffer())), img.layer, 'served from the upstream for this replica only')
    t.ok(a.app.logs.some(l => l.msg === 'bucket unavailable: blob filled from the upstream for this replica only' && !/\n/.test(String(l.err))), 'logged in one line')
    upstream.fault = (req, res) => { if (!req.url!.includes('/manifests/')) return false; res.writeHead(503, { 'content-length': 0 }); res.end(); return true }
    const stale = await fetch(a.url('/manifests/down'), { headers: { accept } })
    t.equal(stale.headers.get('x-cache-status'), 'STALE')
    t.equal(sha256(Buffer.from(await stale.arrayBuffer())), img.manifest.digest)
    upstream.fault = undefined
    const unknown = await fetch(a.url('/manifests/never'), { headers: { accept } })
    const body = await unknown.text()
    t.equal(unknown.status, 404, 'an unknown tag gets the upstream\'s answer')
    t.notMatch(body, /\n\s+at /, 'no stack')
  })
}
