// The pull-through cache on three replicas (issue 17, "What must hold" 2–4), as operators run it:
// three crossdock processes on one bucket of a real Ceph RGW, redis-server, one CA, nginx round
// robin (test/helpers/cluster.ts). Upstreams: the counting fake upstream as ghcr.io (it holds a body
// half-sent until the test lets it go on) and CNCF distribution 2.8 as Docker Hub (real clients).
//   1. cold herd: 12 clients over the 3 replicas pull one cold image at once → 1 upstream GET per
//      blob; the followers' clients read bytes while the upstream still holds the rest back (so
//      before anything could be published), and every client gets the digest's bytes;
//   2. real ctr (registry door through nginx, hosts.toml mirror) then real dockerd (one replica's
//      proxy door) pull one image, cold then warm → 1 upstream GET per blob;
//   3. the leader replica SIGKILLed mid-fill: the followers' clients get an aborted connection with
//      fewer bytes than the size, nothing wrong under cache/blobs/, the next request is filled by
//      another replica once the lock expired (CLUSTER_LOCK_TTL=3s);
//   4. redis-server killed mid-fill: every pull completes, /readyz stays 200 and says Redis is
//      unreachable; Redis back → a new cold blob is fetched once again;
//   5. radosgw stopped: /readyz not ready with the reason, blobs in the local tiers still served;
//      back: cold pulls work.
// This file's address: 127.0.0.48.
import t from 'tap'
import { createHash } from 'node:crypto'
import { request } from 'node:http'
import { HeadObjectCommand, ListObjectsV2Command, GetObjectCommand } from '@aws-sdk/client-s3'
import { requirePrivateNetns, createScope, startDistribution, seedImage, startContainerd, startDockerd, waitFor, type Crossdock } from '../helpers/e2e/index.js'
import { startCluster, type Cluster } from '../helpers/cluster.js'
import { FakeUpstream } from '../helpers/fake-upstream.js'

const ADDRESS = '127.0.0.48'
const HUB = 'registry-1.docker.io'
const MiB = 1 << 20
const PART = 8 * MiB // bucket-fill-writer.ts PART_SIZE: what a follower can read before the leader's next part

const sha256 = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

/** Deterministic bytes, different per seed. */
function bytesOf (seed: number, size: number): Buffer {
  const b = Buffer.alloc(size)
  for (let i = 0; i + 4 <= size; i += 4) b.writeUInt32LE(((i + seed * 7919) * 2654435761) >>> 0, i)
  return b
}

/** One client's GET, streamed: bytes so far, then how it ended. */
interface Pull {
  readonly label: string
  read: number
  readonly done: Promise<{ status: number, bytes: number, digest: string, complete: boolean, error?: string }>
}

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'cluster-cache')
  const ghcr = new FakeUpstream()
  await ghcr.start(ADDRESS)
  scope.defer('stop the fake upstream', async () => { await ghcr.stop() })
  const hub = await startDistribution(scope, { host: ADDRESS, name: 'hub' })
  const cluster: Cluster = await startCluster(scope, {
    address: ADDRESS,
    replicas: 3,
    redis: true,
    connectTo: { 'ghcr.io:443': `${ADDRESS}:${ghcr.port}`, [`${HUB}:443`]: hub.address },
    env: { UPSTREAM_SEGMENTS: '1', CLUSTER_LOCK_TTL: '3s' },
  })
  const s = cluster.startTimes
  t.comment(`cluster up in ${s.totalMs} ms (RGW ${s.rgwMs}, redis ${s.redisMs}, 3 replicas ${s.replicasMs}, nginx ${s.lbMs})`)
  const label = (i: number): string => `replica ${i + 1}`
  const blobPath = (d: string): string => `/v2/ghcr.io/team/herd/blobs/${d}`
  const direct = (c: Crossdock, path: string): string => `http://${c.registryAddress}${path}`
  const upstreamGets = (d: string): number => ghcr.count('GET', `/blobs/${d}`)
  const bucketKey = (d: string): string => `cache/blobs/sha256/${d.slice(7, 9)}/${d.slice(7)}`

  function pull (url: string, lbl: string): Pull {
    const p: { label: string, read: number, done?: Pull['done'] } = { label: lbl, read: 0 }
    p.done = new Promise(resolve => {
      const hash = createHash('sha256')
      let status = 0
      const end = (error?: string, complete = false): void => resolve({ status, bytes: p.read, digest: `sha256:${hash.digest('hex')}`, complete, error })
      const req = request(url, { agent: false }, res => {
        status = res.statusCode ?? 0
        res.on('data', (c: Buffer) => { p.read += c.length; hash.update(c) })
        res.once('error', err => end(err.message))
        res.once('end', () => end(undefined, res.complete))
      })
      req.once('error', err => end(err.message))
      req.end()
    })
    return p as Pull
  }

  /**
   * The first `holds` upstream GETs of `digest` send `at` bytes, then wait for `release` (the
   * others, and any after, send the whole blob at once).
   */
  function holdUpstream (digest: string, at: number, holds = 1): { reached: Promise<void>, release: () => void } {
    let release!: () => void
    const gate = new Promise<void>(resolve => { release = resolve })
    let reached!: () => void
    const reachedP = new Promise<void>(resolve => { reached = resolve })
    let held = 0
    const previous = ghcr.fault
    ghcr.fault = (req, res, hit) => {
      if (hit.method !== 'GET' || !hit.path.endsWith(`/blobs/${digest}`)) return previous?.(req, res, hit) ?? false
      const body = ghcr.blobs.get(digest)!
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, 'docker-content-digest': digest })
      if (held++ >= holds) { res.end(body); return true }
      res.write(body.subarray(0, at))
      reached()
      void gate.then(() => { if (!res.destroyed) res.end(body.subarray(at)) })
      return true
    }
    return { reached: reachedP, release }
  }

  async function inBucket (d: string): Promise<number | undefined> {
    const head = await cluster.s3.send(new HeadObjectCommand({ Bucket: cluster.bucket, Key: bucketKey(d) })).catch(() => undefined)
    return head?.ContentLength
  }

  async function bucketObjectDigest (d: string): Promise<string> {
    const got = await cluster.s3.send(new GetObjectCommand({ Bucket: cluster.bucket, Key: bucketKey(d) }))
    const hash = createHash('sha256')
    for await (const chunk of got.Body as AsyncIterable<Buffer>) hash.update(chunk)
    return `sha256:${hash.digest('hex')}`
  }

  async function readyz (c: Crossdock): Promise<{ status: number, body: { status: string, reason?: string, coordination?: string } }> {
    const res = await fetch(`${c.proxyUrl}/readyz`)
    return { status: res.status, body: await res.json() as { status: string, reason?: string, coordination?: string } }
  }

  t.test('cold herd: 12 clients over 3 replicas, one upstream GET per blob, followers stream before the publish', async t => {
    const big = bytesOf(1, 40 * MiB + 7)
    const small = bytesOf(2, 300_000)
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}')
    const digests = [big, small, config].map(b => ghcr.addBlob(b))
    const [bigD] = digests
    const hold = holdUpstream(bigD, 20 * MiB)
    const bigPulls: Pull[] = []
    const others: Pull[] = []
    for (let i = 0; i < 12; i++) {
      const c = cluster.replicas[i % 3]
      const via = i < 9 ? (path: string) => direct(c, path) : (path: string) => `${cluster.lb.url}${path}`
      const lbl = i < 9 ? label(i % 3) : 'nginx'
      bigPulls.push(pull(via(blobPath(bigD)), lbl))
      for (const d of digests.slice(1)) others.push(pull(via(blobPath(d)), lbl))
    }
    await hold.reached
    // Let go once a client on every replica read more than one part: a follower can only have
    // done so from the leader's parts, while the upstream still holds half the blob back.
    const perReplica = await waitFor('a client on every replica to read more than 8 MiB', () => {
      const per = [0, 1, 2].map(i => Math.max(0, ...bigPulls.filter(p => p.label === label(i)).map(p => p.read)))
      return per.every(n => n > PART) ? per : undefined
    }, { timeoutMs: 60_000, intervalMs: 20 }).catch(() => {
      throw new Error(`followers never streamed: bytes per client ${bigPulls.map(p => `${p.label}=${p.read}`).join(' ')}`)
    })
    t.equal(await inBucket(bigD), undefined, 'nothing published under cache/blobs/ while the upstream holds the rest back')
    t.ok(perReplica.every(n => n > PART && n <= 20 * MiB), `bytes read per replica before the upstream sent the rest: ${perReplica.map(n => (n / MiB).toFixed(1)).join(' / ')} MiB (the upstream had sent 20)`)
    hold.release()
    const results = await Promise.all([...bigPulls, ...others].map(async p => await p.done))
    t.same(results.filter(r => r.status !== 200 || r.error !== undefined || !r.complete).map(r => `${r.status} ${r.error ?? ''}`), [], `${results.length} GETs answered 200 and ended cleanly`)
    t.same(results.slice(0, 12).map(r => r.digest), Array(12).fill(bigD), '12 clients got the 40 MiB blob\'s bytes')
    t.same(results.slice(12).map(r => r.digest).sort(), [...Array(12).fill(digests[1]), ...Array(12).fill(digests[2])].sort(), 'and the small blobs\' bytes')
    t.same(digests.map(upstreamGets), [1, 1, 1], 'one upstream GET per blob cluster-wide')
    const bucketed = await waitFor('the blob published to the bucket', async () => await inBucket(bigD), { timeoutMs: 20_000, intervalMs: 100 })
    t.equal(bucketed, big.length, 'published whole')
    const leaders = await cluster.metricPerReplica('crossdock_cluster_elections_total', { role: 'leader' })
    const followers = await cluster.metricPerReplica('crossdock_cluster_elections_total', { role: 'follower' })
    t.comment(`elections: leader ${leaders.join('/')}, follower ${followers.join('/')}`)
    t.ok((followers.reduce((a, b) => (a ?? 0) + (b ?? 0), 0) ?? 0) >= 2, 'at least two replicas followed a leader')
  })

  t.test('real clients: ctr through nginx (hosts.toml mirror), then dockerd through one replica\'s proxy door, cold then warm', async t => {
    const image = await seedImage(scope, hub, 'library/clustered', '1', { seed: 'cluster-cache', randomBytes: 6 * MiB, randomLayers: 2 })
    const blobs = [image.manifests[0].config.digest, ...image.layers.map(l => l.digest)]
    const hubGets = (d: string): number => hub.requests('GET', new RegExp(`/blobs/${d}$`)).length
    const ctd = await startContainerd(scope)
    const hostsDir = ctd.writeHostsDir({ _default: `[host."http://${cluster.lb.address}"]\n  capabilities = ["pull", "resolve"]\n` })
    await ctd.ctrOk(['images', 'pull', '--hosts-dir', hostsDir, 'docker.io/library/clustered:1'], { timeoutMs: 120_000 })
    t.match(await ctd.ctrOk(['images', 'ls']), image.digest, 'ctr pulled it through nginx (cold)')
    t.same(blobs.map(hubGets), blobs.map(() => 1), 'one upstream GET per blob after the cold pull')
    const dockerd = await startDockerd(scope, { httpsProxy: cluster.replicas[1].proxyUrl, trust: [cluster.caCert] })
    await dockerd.dockerOk(['pull', '-q', 'clustered:1'])
    t.equal((await dockerd.dockerOk(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', 'clustered:1'])).trim(), `clustered@${image.digest}`, 'dockerd pulled it through replica 2\'s proxy door (warm)')
    await ctd.ctrOk(['images', 'rm', 'docker.io/library/clustered:1'])
    await ctd.ctrOk(['content', 'prune', 'references'])
    await ctd.ctrOk(['images', 'pull', '--hosts-dir', hostsDir, 'docker.io/library/clustered:1'], { timeoutMs: 120_000 })
    t.same(blobs.map(hubGets), blobs.map(() => 1), 'still one upstream GET per blob after ctr pulled it again (warm)')
  })

  t.test('the leader SIGKILLed mid-fill: followers abort, nothing half-written, the next request is filled elsewhere', async t => {
    const blob = bytesOf(3, 40 * MiB + 3)
    const d = ghcr.addBlob(blob)
    const hold = holdUpstream(d, 20 * MiB)
    const leadersBefore = await cluster.metricPerReplica('crossdock_cluster_elections_total', { role: 'leader' })
    const first = pull(direct(cluster.replicas[0], blobPath(d)), label(0))
    await hold.reached
    const leadersNow = await cluster.metricPerReplica('crossdock_cluster_elections_total', { role: 'leader' })
    t.same(leadersNow.map((n, i) => (n ?? 0) - (leadersBefore[i] ?? 0)), [1, 0, 0], 'replica 1 leads the fill (its leader elections +1)')
    const followers = [1, 2].map(i => pull(direct(cluster.replicas[i], blobPath(d)), label(i)))
    await waitFor('both followers\' clients to read more than one part', () => followers.every(p => p.read > PART), { timeoutMs: 30_000, intervalMs: 50 })
    await cluster.killReplica(0)
    t.comment(`killed replica 1 with ${followers.map(p => (p.read / MiB).toFixed(1)).join(' / ')} MiB read by its followers' clients`)
    const ended = await Promise.all(followers.map(async p => await p.done))
    for (const [i, r] of ended.entries()) {
      t.ok(r.bytes < blob.length && !r.complete && r.error !== undefined, `${label(i + 1)}'s client: aborted after ${r.bytes} of ${blob.length} bytes (${r.error ?? 'clean end!'})`)
    }
    const head = await inBucket(d)
    t.ok(head === undefined || (head === blob.length && await bucketObjectDigest(d) === d), `cache/blobs/ for it: ${head === undefined ? 'absent' : 'the whole verified object'}`)
    const gets = upstreamGets(d)
    const next = await pull(direct(cluster.replicas[1], blobPath(d)), label(1)).done
    t.equal(next.digest, d, `the next request on replica 2 completes with the digest (${next.bytes} bytes)`)
    t.equal(upstreamGets(d), gets + 1, 'filled by one more upstream GET')
    await waitFor('the blob published by replica 2', async () => await inBucket(d), { timeoutMs: 20_000, intervalMs: 100 })
    t.equal(await bucketObjectDigest(d), d, 'the published object hashes to its key')
    await cluster.restartReplica(0)
    const back = await pull(direct(cluster.replicas[0], blobPath(d)), label(0)).done
    t.equal(back.digest, d, 'replica 1, restarted, serves it from the bucket')
    t.equal(upstreamGets(d), gets + 1, 'without asking the upstream')
  })

  t.test('redis-server killed mid-fill: pulls complete, /readyz stays 200 and says so; coordination resumes after', async t => {
    const blob = bytesOf(4, 24 * MiB + 1)
    const d = ghcr.addBlob(blob)
    const hold = holdUpstream(d, 12 * MiB)
    // /readyz of every replica, asked over and over from here to the end of this test.
    const notReady: string[] = []
    let watching = true
    const watcher = (async () => {
      let rounds = 0
      while (watching) {
        for (const [i, c] of cluster.replicas.entries()) { const r = await readyz(c); if (r.status !== 200) notReady.push(`${label(i)}: ${r.status} ${r.body.reason ?? ''}`) }
        rounds++
        await new Promise(resolve => setTimeout(resolve, 100)) // a polling interval, not an ordering
      }
      return rounds
    })()
    const pulls = [0, 1, 2].map(i => pull(direct(cluster.replicas[i], blobPath(d)), label(i)))
    await hold.reached
    await waitFor('every replica\'s client to read bytes', () => pulls.every(p => p.read > 0), { timeoutMs: 30_000, intervalMs: 50 })
    await cluster.killRedis()
    for (const [i, c] of cluster.replicas.entries()) {
      const r = await waitFor(`${label(i)} to notice`, async () => {
        const r = await readyz(c)
        return r.status !== 200 || /unreachable/.test(r.body.coordination ?? '') ? r : undefined
      }, { timeoutMs: 15_000, intervalMs: 100 })
      t.equal(r.status, 200, `${label(i)} /readyz 200 without Redis: ${r.body.coordination ?? ''}`)
    }
    hold.release()
    const results = await Promise.all(pulls.map(async p => await p.done))
    t.same(results.map(r => `${r.status} ${r.digest === d ? 'ok' : r.digest} ${r.error ?? ''}`), results.map(() => `200 ok `), 'the three pulls in flight when Redis died completed with the digest')
    t.comment(`upstream GETs for it: ${upstreamGets(d)}`)

    const cold = bytesOf(5, 3 * MiB)
    const dc = ghcr.addBlob(cold)
    const without = await Promise.all([0, 1, 2, 0, 1, 2].map(async i => await pull(direct(cluster.replicas[i], blobPath(dc)), label(i)).done))
    t.same(without.map(r => r.digest), Array(6).fill(dc), '6 cold pulls without Redis: right bytes')
    t.ok(upstreamGets(dc) >= 1 && upstreamGets(dc) <= 3, `${upstreamGets(dc)} upstream GETs (one per replica at most)`)
    for (const [i, c] of cluster.replicas.entries()) t.equal((await readyz(c)).status, 200, `${label(i)} still ready`)

    await cluster.startRedis()
    for (const [i, c] of cluster.replicas.entries()) {
      const r = await waitFor(`${label(i)} coordinated again`, async () => {
        const r = await readyz(c)
        return /^redis: one fill/.test(r.body.coordination ?? '') ? r : undefined
      }, { timeoutMs: 20_000, intervalMs: 100 })
      t.equal(r.status, 200, `${label(i)}: ${r.body.coordination ?? ''}`)
    }
    const again = bytesOf(6, 16 * MiB + 5)
    const da = ghcr.addBlob(again)
    const after = await Promise.all([0, 1, 2, 0, 1, 2].map(async i => await pull(direct(cluster.replicas[i], blobPath(da)), label(i)).done))
    t.same(after.map(r => r.digest), Array(6).fill(da), '6 cold pulls after Redis returned: right bytes')
    t.equal(upstreamGets(da), 1, 'one upstream GET again')
    watching = false
    const rounds = await watcher
    t.same(notReady, [], `/readyz answered 200 on every replica in all ${rounds} rounds (every 100 ms) through the outage`)
  })

  t.test('radosgw stopped: not ready with the reason, local tiers still serve; back: cold pulls work', async t => {
    const warm = ghcr.addBlob(bytesOf(1, 40 * MiB + 7)) // the herd's blob: in every replica's local tier
    await cluster.stopGateway()
    try {
      for (const [i, c] of cluster.replicas.entries()) {
        const r = await waitFor(`${label(i)} not ready`, async () => { const r = await readyz(c); return r.status === 503 ? r : undefined }, { timeoutMs: 20_000, intervalMs: 200 })
        t.match(r.body.reason ?? '', /bucket/, `${label(i)}: ${r.body.reason ?? ''}`)
      }
      const served = await Promise.all([1, 2].map(async i => await pull(direct(cluster.replicas[i], blobPath(warm)), label(i)).done))
      t.same(served.map(r => r.digest), [warm, warm], 'replicas 2 and 3 serve the herd\'s blob from their local tier')
    } finally {
      await cluster.startGateway()
    }
    for (const [i, c] of cluster.replicas.entries()) {
      await waitFor(`${label(i)} ready again`, async () => (await readyz(c)).status === 200, { timeoutMs: 30_000, intervalMs: 200 })
    }
    const d = ghcr.addBlob(bytesOf(7, 2 * MiB))
    const got = await Promise.all([0, 1, 2].map(async i => await pull(direct(cluster.replicas[i], blobPath(d)), label(i)).done))
    t.same(got.map(r => r.digest), [d, d, d], 'a cold blob pulled from every replica after radosgw returned')
    t.equal(upstreamGets(d), 1, 'one upstream GET')
    const leftovers = await cluster.s3.send(new ListObjectsV2Command({ Bucket: cluster.bucket, Prefix: 'cache/blobs/' }))
    t.comment(`${leftovers.KeyCount ?? 0} blobs in the bucket at the end`)
  })
}
