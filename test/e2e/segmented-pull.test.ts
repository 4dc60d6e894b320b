// Segmented downloads (issue 20) with real parts: containerd (`ctr images pull`, mirror mode on the
// registry door) pulls an image whose two random layers are 4 MiB each from CNCF distribution 2.8
// through crossdock with UPSTREAM_SEGMENTS=4 and UPSTREAM_SEGMENT_MIN_SIZE=1m. Distribution answers
// Range with 206: each large layer reaches crossdock over 4 range requests (its access log; the rate
// rule off: UPSTREAM_SEGMENT_RATE=0), ctr's content store verifies every digest, and the cached
// layers read back hash to their digests.
import t from 'tap'
import { createHash } from 'node:crypto'
import { get } from 'node:http'
import { requirePrivateNetns, createScope, startDistribution, seedImage, startCrossdock, startContainerd } from '../helpers/e2e/index.js'

const HOST = '127.0.0.53' // this file's loopback address (test/e2e/README.md)
const LAYER = 4 << 20

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'segments')

  t.test('ctr pulls through the registry door; each large layer came over 4 range requests, digests verified', async t => {
    const upstream = await startDistribution(scope, { host: HOST, name: 'upstream' })
    const image = await seedImage(scope, upstream, 'library/segmented', '1', { seed: 'segments', randomBytes: LAYER, randomLayers: 2 })
    const crossdock = await startCrossdock(scope, {
      host: HOST,
      connectTo: { 'registry-1.docker.io:443': upstream.address },
      env: { UPSTREAM_SEGMENTS: '4', UPSTREAM_SEGMENT_MIN_SIZE: '1m', UPSTREAM_SEGMENT_RATE: '0', PREFETCH_CONCURRENCY: '0' },
    })
    const ctd = await startContainerd(scope, 'containerd')
    const hostsDir = ctd.writeHostsDir({ 'docker.io': `server = "https://registry-1.docker.io"\n[host."http://${crossdock.registryAddress}"]\n  capabilities = ["pull", "resolve"]\n` })
    await ctd.ctrOk(['images', 'pull', '--hosts-dir', hostsDir, 'docker.io/library/segmented:1'], { timeoutMs: 120_000 })
    t.match(await ctd.ctrOk(['images', 'ls']), image.digest, 'ctr recorded the manifest digest')
    const content = await ctd.ctrOk(['content', 'ls', '-q'])

    const large = image.layers.filter(l => l.size >= 1 << 20)
    t.ok(large.length >= 2, `${large.length} layers above UPSTREAM_SEGMENT_MIN_SIZE (the random ones, busybox too)`)
    for (const layer of large) {
      t.match(content, layer.digest, `ctr's content store holds ${layer.digest.slice(0, 19)}… (it verified the digest)`)
      const gets = await upstream.waitForRequests('GET', `/v2/library/segmented/blobs/${layer.digest}`, 4)
      t.same(gets.map(g => g.status), [206, 206, 206, 206], 'four range requests, each answered 206')
      const cached = await fetchBytes(`http://${crossdock.registryAddress}/v2/docker.io/library/segmented/blobs/${layer.digest}`)
      t.equal(cached.headers, 'HIT', 'served from the cache now')
      t.equal(`sha256:${createHash('sha256').update(cached.body).digest('hex')}`, layer.digest, 'the cached bytes hash to the digest')
      t.equal(cached.body.length, layer.size)
    }
    const config = image.manifests[0].config
    const gets = await upstream.waitForRequests('GET', `/v2/library/segmented/blobs/${config.digest}`)
    t.same(gets.map(g => g.status), [206], `the config (${config.size} bytes): one request, bytes=0-`)
  })
}

async function fetchBytes (url: string): Promise<{ headers: string | undefined, body: Buffer }> {
  return await new Promise((resolve, reject) => {
    get(url, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ headers: res.headers['x-cache-status'] as string | undefined, body: Buffer.concat(chunks) }) })
      res.on('error', reject)
    }).on('error', reject)
  })
}
