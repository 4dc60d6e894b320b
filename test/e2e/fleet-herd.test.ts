// Issue 13 with real clients: a fleet pulls the same cold image at the same moment. containerd's Go
// client does not retry a request whose connection closed without a response (curl would, and hide
// it), so every pull must see a status line for every request.
//
//   1. 16 `ctr images pull` at once (16 namespaces of one containerd) through the proxy door, of a
//      cold 5-layer image (4 MiB random layers): 3 runs, each with a new image. Every pull exits 0,
//      every image's layers verified by containerd, one upstream GET per blob, nothing abandoned.
//   2. 8 at once through the registry door (containerd mirror mode, `?ns=`) with CACHE_MAX_SIZE
//      smaller than the image: entries are evicted while others still read them.
//   3. 2 dockerd daemons pulling the same cold image at once through the proxy door.
import t from 'tap'
import {
  requirePrivateNetns, createScope, startDistribution, seedImage, startCrossdock, startContainerd, startDockerd,
  type BuiltImage, type Containerd, type Crossdock, type Distribution, type LogLine,
} from '../helpers/e2e/index.js'

const HOST = '127.0.0.30' // this file's loopback address (test/e2e/README.md)
const HUB = 'registry-1.docker.io'
const LAYER = 4 << 20

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'herd')
  let upstream!: Distribution
  let crossdock!: Crossdock
  let ctd!: Containerd

  t.before(async () => {
    upstream = await startDistribution(scope, { host: HOST, name: 'upstream' })
    crossdock = await startCrossdock(scope, { host: HOST, connectTo: { [`${HUB}:443`]: upstream.address } })
    ctd = await startContainerd(scope)
  })

  const blobsOf = (image: BuiltImage): string[] => [image.manifests[0].config.digest, ...image.layers.map(l => l.digest)]
  // Any repository: the busybox layer is shared by every image of this file.
  const upstreamGets = (digest: string): number => upstream.requests('GET', new RegExp(`/blobs/${digest}$`)).length
  const abandoned = (): LogLine[] => crossdock.logs.filter(l => l.abandoned !== undefined || /abandoned/.test(String(l.msg)))

  /** `n` pulls of `ref` at once, each in its own containerd namespace; the failures' stderr. */
  async function herd (n: number, prefix: string, ref: string, extra: string[], net: Parameters<Containerd['ctr']>[1]): Promise<string[]> {
    const results = await Promise.all(Array.from({ length: n }, async (_, i) =>
      await ctd.ctr(['--namespace', `${prefix}-${i}`, 'images', 'pull', ...extra, ref], { ...net, timeoutMs: 180_000 })))
    return results.filter(r => r.code !== 0).map(r => r.stderr.trim().split('\n').slice(-1)[0] ?? '')
  }

  for (const run of [1, 2, 3]) {
    t.test(`run ${run}: 16 ctr pulls of one cold 5-layer image through the proxy door`, async t => {
      const image = await seedImage(scope, upstream, `library/herd${run}`, '1', { seed: `herd-${run}`, randomBytes: LAYER, randomLayers: 4 })
      const before = abandoned().length
      const failures = await herd(16, `proxy${run}`, `docker.io/library/herd${run}:1`, [], { httpsProxy: crossdock.proxyUrl, trust: [crossdock.caCert] })
      t.same(failures, [], '0 of 16 pulls failed')
      for (const d of blobsOf(image)) t.equal(upstreamGets(d), 1, `one upstream GET for ${d.slice(0, 19)}… since the first run`)
      const listed = await ctd.ctrOk(['--namespace', `proxy${run}-15`, 'images', 'ls'])
      t.match(listed, image.digest, 'the last namespace holds the image by its manifest digest')
      t.same(abandoned().slice(before), [], 'crossdock abandoned no response')
    })
  }

  t.test('8 ctr pulls through the registry door with a cache smaller than the image: evictions during reads', async t => {
    await crossdock.stop()
    await crossdock.start({ CACHE_MAX_SIZE: String(10 << 20) })
    const image = await seedImage(scope, upstream, 'library/tight', '1', { seed: 'herd-tight', randomBytes: LAYER, randomLayers: 4 })
    const hostsDir = ctd.writeHostsDir({ _default: `[host."http://${crossdock.registryAddress}"]\n  capabilities = ["pull", "resolve"]\n` })
    const before = abandoned().length
    const failures = await herd(8, 'door', 'docker.io/library/tight:1', ['--hosts-dir', hostsDir], {})
    t.same(failures, [], '0 of 8 pulls failed')
    t.ok(crossdock.logs.some(l => l.msg === 'cache entry removed' || l.cacheStatus === 'BYPASS' || l.cacheStatus === 'MISS'), 'the cache was too small to keep everything')
    t.match(await ctd.ctrOk(['--namespace', 'door-7', 'images', 'ls']), image.digest, 'the image is there by its manifest digest')
    t.same(abandoned().slice(before), [], 'crossdock abandoned no response')
  })

  t.test('2 dockerd daemons pull one cold image at once through the proxy door', async t => {
    await crossdock.stop()
    await crossdock.start({ CACHE_MAX_SIZE: '32g' })
    const image = await seedImage(scope, upstream, 'library/pair', '1', { seed: 'herd-pair', randomBytes: LAYER, randomLayers: 4 })
    const before = new Map(blobsOf(image).map(d => [d, upstreamGets(d)]))
    const daemons = await Promise.all(['d1', 'd2'].map(async name => await startDockerd(scope, { httpsProxy: crossdock.proxyUrl, trust: [crossdock.caCert], name })))
    const pulls = await Promise.all(daemons.map(async d => await d.docker(['pull', '-q', 'pair:1'])))
    t.same(pulls.map(p => p.code), [0, 0], `both pulls exit 0 ${pulls.map(p => p.stderr.trim()).join(' ')}`)
    for (const d of daemons) {
      t.equal((await d.dockerOk(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', 'pair:1'])).trim(), `pair@${image.digest}`, 'RepoDigest is the seeded manifest')
    }
    // The busybox layer may still be cached from the runs above (or evicted by the tight one): ≤ 1.
    for (const d of blobsOf(image)) t.ok(upstreamGets(d) - (before.get(d) ?? 0) <= 1, `at most one upstream GET for ${d.slice(0, 19)}…`)
    for (const d of blobsOf(image).slice(0, 1).concat(image.layers.slice(1).map(l => l.digest))) t.equal(upstreamGets(d), 1, `exactly one for the new blob ${d.slice(0, 19)}…`)
  })
}
