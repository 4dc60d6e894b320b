// Acceptance test of the pull-through cache (issue 4) with real clients: dockerd, whose only trust
// is crossdock's CA, pulls through crossdock's proxy door from a real distribution registry standing
// in for Docker Hub (UPSTREAM_CONNECT_TO). What reached the upstream is read from distribution's
// access log; what crossdock did is read from its request log lines (cacheStatus).
//
//   1. pull, rmi, pull: the second pull asks the upstream only for the tag (HEAD); every manifest
//      and blob is a HIT.                                       (a two-layer image and a multi-arch
//                                                                 index pulled for linux/arm64)
//   2. upstream stopped: rmi, pull still works from the cache; the tag is served STALE.
//   3. ctr after dockerd: its manifest-by-digest and blob GETs are HITs (one cache for all clients).
//   4. skopeo copy to dir: every blob a HIT, and every file hashes to its digest.
//   5. crossdock restarted with ENABLE_MANIFEST_CACHE=true on the warm cache: its disk cache
//      survived, and a pull asks the upstream nothing (but dockerd's /v2/ ping, passed through).
import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import {
  requirePrivateNetns, createScope, startDistribution, seedImage, startCrossdock, startDockerd, startContainerd, skopeo,
  waitFor,
  type AccessLogEntry, type BuiltImage, type Crossdock, type Distribution, type Dockerd, type LogLine,
} from '../helpers/e2e/index.js'

const HOST = '127.0.0.22' // this file's loopback address (test/e2e/README.md)
const HUB = 'registry-1.docker.io'

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'cache')
  let upstream!: Distribution
  let app!: BuiltImage
  let multi!: BuiltImage
  let crossdock!: Crossdock
  let dockerd!: Dockerd

  t.before(async () => {
    upstream = await startDistribution(scope, { host: HOST, name: 'upstream' })
    app = await seedImage(scope, upstream, 'library/app', '1', { seed: 'cache-app', randomBytes: 768 * 1024 })
    multi = await seedImage(scope, upstream, 'library/multi', '1', { seed: 'cache-multi', randomBytes: 256 * 1024, platforms: ['linux/amd64', 'linux/arm64'] })
    crossdock = await startCrossdock(scope, { host: HOST, connectTo: { [`${HUB}:443`]: upstream.address } })
    dockerd = await startDockerd(scope, { httpsProxy: crossdock.proxyUrl, trust: [crossdock.caCert] })
  })

  t.test('docker pull, rmi, pull: the second pull only asks the upstream for the tag', async t => {
    const cold = mark()
    await dockerd.dockerOk(['pull', '-q', 'app:1'])
    t.equal(await repoDigest('app:1'), `app@${app.digest}`, 'RepoDigest is the seeded manifest')
    for (const d of blobsOf(app)) {
      t.ok((await upstream.waitForRequests('GET', blobPath('library/app', d))).some(e => e.status === 200), `cold pull: upstream served blob ${short(d)}`)
      // MISS when dockerd asked first, JOINED or HIT when the prefetch (issue 20) did: one upstream GET either way.
      t.match((await crossdockLine(cold, 'GET', blobPath('library/app', d)))?.cacheStatus, /^(MISS|JOINED|HIT)$/, `cold pull: crossdock logged blob ${short(d)} as a cold fetch`)
      t.equal((await upstream.waitForRequests('GET', blobPath('library/app', d))).filter(e => e.status === 200).length, 1, `cold pull: one upstream GET of blob ${short(d)}`)
    }

    await dockerd.dockerOk(['rmi', 'app:1'])
    t.not((await dockerd.docker(['image', 'inspect', 'app:1'])).code, 0, 'app:1 is gone from dockerd')
    const warm = mark()
    await dockerd.dockerOk(['pull', '-q', 'app:1'])
    t.equal(await repoDigest('app:1'), `app@${app.digest}`, 'same RepoDigest after the warm pull')
    await assertWarmPull(t, warm, 'library/app', [app.digest], blobsOf(app))
  })

  t.test('a multi-arch index pulled for linux/arm64: index, platform manifest and blobs are cached too', async t => {
    const arm64 = platformManifest(multi, 'linux/arm64')
    await dockerd.dockerOk(['pull', '-q', '--platform', 'linux/arm64', 'multi:1'])
    t.equal(await repoDigest('multi:1'), `multi@${multi.digest}`, 'RepoDigest is the index')
    t.equal((await dockerd.dockerOk(['image', 'inspect', '--format', '{{.Architecture}}', 'multi:1'])).trim(), 'arm64', 'the arm64 image was pulled')
    t.ok((await upstream.waitForRequests('GET', manifestPath('library/multi', arm64.digest))).some(e => e.status === 200), 'cold pull: upstream served the arm64 manifest')

    await rmiAll()
    const warm = mark()
    await dockerd.dockerOk(['pull', '-q', '--platform', 'linux/arm64', 'multi:1'])
    t.equal(await repoDigest('multi:1'), `multi@${multi.digest}`, 'same RepoDigest after the warm pull')
    await assertWarmPull(t, warm, 'library/multi', [multi.digest, arm64.digest], [arm64.config.digest, ...multi.layers.map(l => l.digest)])
  })

  t.test('with the upstream stopped, a pull is served from the cache (tag STALE)', async t => {
    await upstream.stop()
    t.teardown(async () => { if (!upstream.running()) await upstream.start() })
    await rmiAll()
    const at = mark()
    const pulled = await dockerd.docker(['pull', '-q', 'app:1'])
    t.equal(pulled.code, 0, `docker pull exits 0 with the upstream down ${pulled.stderr.trim()}`)
    t.equal(await repoDigest('app:1'), `app@${app.digest}`, 'same RepoDigest as from the upstream')
    const tag = await crossdockLine(at, 'HEAD', manifestPath('library/app', '1'))
    t.equal(tag?.status, 200, 'crossdock answered the tag HEAD 200')
    t.equal(tag?.cacheStatus, 'STALE', 'and logged it STALE')
    t.ok(crossdock.logs.slice(at.log).some(l => l.msg === 'upstream failed; tag served from cache (STALE)' && l.tag === '1'), 'crossdock warned that it served the tag stale')
    for (const d of blobsOf(app)) t.equal((await crossdockLine(at, 'GET', blobPath('library/app', d)))?.cacheStatus, 'HIT', `blob ${short(d)} HIT`)
    await upstream.start()
  })

  t.test('ctr after dockerd: manifests by digest and blobs are HITs (one cache for every client)', async t => {
    const ctd = await startContainerd(scope)
    const viaCrossdock = { httpsProxy: crossdock.proxyUrl, trust: [crossdock.caCert] }
    const arm64 = platformManifest(multi, 'linux/arm64')
    for (const [ref, repo, digests, blobs, platform] of [
      ['docker.io/library/app:1', 'library/app', [app.digest], blobsOf(app), 'linux/amd64'],
      // The busybox layer is shared with app:1, so containerd already has it.
      ['docker.io/library/multi:1', 'library/multi', [multi.digest, arm64.digest], [arm64.config.digest, multi.layers[1]?.digest ?? ''], 'linux/arm64'],
    ] as const) {
      const at = mark()
      await ctd.ctrOk(['images', 'pull', '--platform', platform, ref], viaCrossdock)
      t.match(await ctd.ctrOk(['images', 'ls']), digests[0], `ctr recorded ${ref} at ${short(digests[0])}`)
      const head = await upstream.waitForRequests('HEAD', manifestPath(repo, '1'), at.upstreamTagHeads(repo) + 1)
      t.ok(head.slice(-1).some(e => /containerd/.test(e.userAgent)), `the upstream saw containerd's tag HEAD for ${repo}`)
      for (const d of digests) t.equal((await crossdockLine(at, 'GET', manifestPath(repo, d)))?.cacheStatus, 'HIT', `${repo} manifest ${short(d)} HIT`)
      for (const d of blobs) t.equal((await crossdockLine(at, 'GET', blobPath(repo, d)))?.cacheStatus, 'HIT', `${repo} blob ${short(d)} HIT`)
      t.same(reads(upstreamSince(at), repo), [], `nothing of ${repo} but the tag HEAD went upstream`)
    }
  })

  t.test('skopeo copy to dir: every blob is a HIT and hashes to its digest', async t => {
    const at = mark()
    const out = scope.path('skopeo-out')
    const copied = await skopeo(scope, ['copy', 'docker://docker.io/library/app:1', `dir:${out}`], { httpsProxy: crossdock.proxyUrl, trust: [crossdock.caCert] })
    t.equal(copied.code, 0, `skopeo copy exits 0 ${copied.stderr.trim()}`)
    const manifest = readFileSync(`${out}/manifest.json`)
    t.equal(sha256(manifest), app.digest, 'manifest.json is the seeded manifest')
    const files = readdirSync(out).filter(f => /^[0-9a-f]{64}$/.test(f))
    t.same(files.map(f => `sha256:${f}`).sort(), blobsOf(app).sort(), 'dir: holds the config and every layer')
    for (const f of files) t.equal(sha256(readFileSync(`${out}/${f}`)), `sha256:${f}`, `${f.slice(0, 12)}… hashes to its name`)
    for (const d of blobsOf(app)) t.equal((await crossdockLine(at, 'GET', blobPath('library/app', d)))?.cacheStatus, 'HIT', `blob ${short(d)} HIT`)
    // skopeo reads the tag with GET (not HEAD); crossdock resolves it with a HEAD upstream either way.
    t.ok(await crossdockLine(at, 'GET', manifestPath('library/app', '1')), 'crossdock logged skopeo\'s GET of the tag')
    await upstream.waitForRequests('HEAD', manifestPath('library/app', '1'), at.upstreamTagHeads('library/app') + 1)
    t.same(reads(upstreamSince(at), 'library/app'), [], 'no manifest or blob GET went upstream')
  })

  t.test('with the upstream stopped, skopeo copies from the cache too', async t => {
    await upstream.stop()
    t.teardown(async () => { if (!upstream.running()) await upstream.start() })
    // skopeo copied app:1 above, so crossdock knows the tag as skopeo asks for it (its Accept).
    const at = mark()
    const out = scope.path('skopeo-stale')
    const copied = await skopeo(scope, ['copy', 'docker://docker.io/library/app:1', `dir:${out}`], { httpsProxy: crossdock.proxyUrl, trust: [crossdock.caCert] })
    t.equal(copied.code, 0, `skopeo copy exits 0 with the upstream down ${copied.stderr.trim()}`)
    const ping = await crossdockLine(at, 'GET', '/v2/')
    t.equal(ping?.status, 200, 'crossdock answered skopeo\'s /v2/ ping 200 without the upstream')
    t.equal((await crossdockLine(at, 'GET', manifestPath('library/app', '1')))?.cacheStatus, 'STALE', 'the tag (GET) served STALE')
    await upstream.start()
  })

  t.test('ENABLE_MANIFEST_CACHE=true: restarted on the warm cache, a pull asks the upstream nothing', async t => {
    await crossdock.stop()
    await crossdock.start({ ENABLE_MANIFEST_CACHE: 'true' })
    await rmiAll()
    // The first pull after the restart: the cache on disk survived (every blob a HIT, no manifest
    // or blob fetched again). crossdock may still check the repository upstream once, as what it
    // knows in memory (e.g. which repositories are public, design.md §3) starts empty.
    const restarted = mark()
    await dockerd.dockerOk(['pull', '-q', 'app:1'])
    t.equal(await repoDigest('app:1'), `app@${app.digest}`, 'same RepoDigest after the restart')
    for (const d of blobsOf(app)) t.equal((await crossdockLine(restarted, 'GET', blobPath('library/app', d)))?.cacheStatus, 'HIT', `after the restart, blob ${short(d)} HIT`)
    t.same(upstreamSince(restarted).filter(e => e.method === 'GET' && e.path.startsWith('/v2/library/')).map(e => e.path), [], 'after the restart, no manifest or blob GET went upstream')

    await rmiAll()
    const at = mark()
    await dockerd.dockerOk(['pull', '-q', 'app:1'])
    t.equal(await repoDigest('app:1'), `app@${app.digest}`, 'same RepoDigest')
    const tag = await crossdockLine(at, 'HEAD', manifestPath('library/app', '1'))
    t.equal(tag?.cacheStatus, 'HIT', 'the tag HEAD is a HIT')
    for (const d of blobsOf(app)) t.equal((await crossdockLine(at, 'GET', blobPath('library/app', d)))?.cacheStatus, 'HIT', `blob ${short(d)} HIT`)
    // dockerd's API-version ping (GET /v2/) is not part of the image: the proxy door passes it
    // through, as the upstream's auth challenge must reach the client. Nothing else may go upstream.
    t.same(upstreamSince(at).map(e => `${e.method} ${e.path}`).filter(r => r !== 'GET /v2/'), [], 'the upstream saw no request but the /v2/ ping')
    t.notOk(upstreamSince(at).some(e => e.path.startsWith('/v2/library/')), 'not even the tag HEAD')
  })

  // --- helpers bound to this file's peers ---

  interface Mark { upstream: number, log: number, upstreamTagHeads: (repo: string) => number }
  /** Where the upstream's access log and crossdock's log are now; tag HEAD counts as of now. */
  function mark (): Mark {
    const heads = new Map(['library/app', 'library/multi'].map(r => [r, upstream.requests('HEAD', manifestPath(r, '1')).length]))
    return { upstream: upstream.accessLog.length, log: crossdock.logs.length, upstreamTagHeads: repo => heads.get(repo) ?? 0 }
  }

  /** dockerd forgets every image (and so every layer): the next pull fetches all its blobs. */
  async function rmiAll (): Promise<void> {
    const ids = (await dockerd.dockerOk(['image', 'ls', '-q'])).split('\n').filter(Boolean)
    if (ids.length > 0) await dockerd.dockerOk(['rmi', '-f', ...new Set(ids)])
  }

  function upstreamSince (at: Mark): AccessLogEntry[] {
    return upstream.accessLog.slice(at.upstream)
  }

  /** crossdock's request line for `method path` since `at` (waits for it: lines come at response close). */
  async function crossdockLine (at: Mark, method: string, path: string): Promise<LogLine | undefined> {
    return await waitFor(`crossdock's line for ${method} ${path}`, () =>
      crossdock.logs.slice(at.log).find(l => l.msg === 'request' && l.host === HUB && l.method === method && l.path === path),
    { timeoutMs: 5000, intervalMs: 20 }).catch(() => undefined)
  }

  /**
   * A warm pull by dockerd: crossdock answers every manifest and blob from the cache, and the only
   * request for the repository that reaches the upstream is the tag HEAD.
   */
  async function assertWarmPull (t: Test, at: Mark, repo: string, manifests: string[], blobs: string[]): Promise<void> {
    const tag = await crossdockLine(at, 'HEAD', manifestPath(repo, '1'))
    t.equal(tag?.cacheStatus, 'HIT', 'crossdock answered the tag HEAD from the cache (revalidated upstream)')
    for (const d of blobs) t.equal((await crossdockLine(at, 'GET', blobPath(repo, d)))?.cacheStatus, 'HIT', `blob ${short(d)} HIT`)
    // dockerd 20.10 keeps the manifests it pulled in its own content store and may not ask again
    // (ctr below always does); whichever it asked for came from the cache.
    const asked = crossdock.logs.slice(at.log).filter(l => l.msg === 'request' && l.method === 'GET' && manifests.some(d => l.path === manifestPath(repo, d)))
    t.same(asked.filter(l => l.cacheStatus !== 'HIT').map(l => `${String(l.path)} ${String(l.cacheStatus)}`), [], `manifests by digest dockerd asked for (${asked.length}) were HITs`)
    const heads = await upstream.waitForRequests('HEAD', manifestPath(repo, '1'), at.upstreamTagHeads(repo) + 1)
    t.ok(heads.length > at.upstreamTagHeads(repo), 'the upstream saw the tag HEAD')
    t.same(reads(upstreamSince(at), repo), [], 'no blob GET and no manifest-by-digest GET went upstream')
  }

  async function repoDigest (ref: string): Promise<string> {
    return (await dockerd.dockerOk(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', ref])).trim()
  }
}

/** Upstream requests for `repo` other than the tag HEAD, as "METHOD path" (for readable diffs). */
function reads (entries: AccessLogEntry[], repo: string): string[] {
  return entries.filter(e => e.path.startsWith(`/v2/${repo}/`) && !(e.method === 'HEAD' && e.path === manifestPath(repo, '1'))).map(e => `${e.method} ${e.path}`)
}

function blobsOf (image: BuiltImage): string[] {
  const m = image.manifests[0]
  if (m === undefined) throw new Error('image without a manifest')
  return [m.config.digest, ...image.layers.map(l => l.digest)]
}

function platformManifest (image: BuiltImage, platform: string): BuiltImage['manifests'][number] {
  const m = image.manifests.find(x => x.platform === platform)
  if (m === undefined) throw new Error(`no ${platform} manifest`)
  return m
}

function blobPath (repo: string, digest: string): string { return `/v2/${repo}/blobs/${digest}` }
function manifestPath (repo: string, ref: string): string { return `/v2/${repo}/manifests/${ref}` }
function short (digest: string): string { return digest.slice(7, 19) }
function sha256 (b: Buffer): string { return `sha256:${createHash('sha256').update(b).digest('hex')}` }
