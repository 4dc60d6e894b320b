// Prefetch (src/mirror/prefetch.ts) through a real CONNECT + TLS client: a manifest passing starts
// its blobs' downloads, clients join them, the concurrency bound and the per-image budget hold, an
// index prefetches nothing, a 429 stops it, and a client's own request never waits behind it.
// Ordering comes from upstream-side gates (FakeUpstream's fault hook), never from sleeps.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { sha256, type FakeUpstream } from '../../helpers/fake-upstream.js'
import type { BlobFill } from '../../../src/cache/blob-fill.js'
import { fetchThrough, startWithUpstream } from './harness.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const HUB = 'registry-1.docker.io'

interface Image { digest: string, blobs: string[] }

/** An image with a config and layers of these sizes under repository:tag. */
function addImage (up: FakeUpstream, repository: string, tag: string | undefined, sizes: number[]): Image {
  const config = up.addBlob(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers' }, n: randomBytes(8).toString('hex') }))
  const layers = sizes.map(n => up.addBlob(randomBytes(n)))
  const m = up.addManifest(repository, tag, {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: up.blobs.get(config)!.length },
    layers: layers.map(d => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d, size: up.blobs.get(d)!.length })),
  }, OCI_MANIFEST)
  return { digest: m.digest, blobs: [config, ...layers] }
}

/** Holds upstream blob GETs of `held` digests until released; tells when GETs arrived. */
function gateBlobGets (up: FakeUpstream, held: (digest: string) => boolean) {
  const arrived: string[] = []
  const releases = new Map<string, () => void>()
  const open = new Set<string>()
  const waiters: Array<() => void> = []
  up.fault = async (_req, _res, hit) => {
    const m = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(hit.path)
    if (hit.method !== 'GET' || m === null) return false
    arrived.push(m[1])
    for (const w of waiters.splice(0)) w()
    if (held(m[1]) && !open.has(m[1])) await new Promise<void>(resolve => releases.set(m[1], resolve))
    return false
  }
  return {
    arrived,
    async atLeast (n: number): Promise<void> { while (arrived.length < n) await new Promise<void>(resolve => waiters.push(resolve)) },
    release (d: string): void { open.add(d); releases.get(d)?.(); releases.delete(d) },
    releaseAll (): void { for (const d of [...releases.keys()]) this.release(d) },
  }
}

const getsOf = (up: FakeUpstream, d: string): number => up.count('GET', `/blobs/${d}`)

t.test('a manifest fetched by tag starts its config and layers; the client then gets them from the cache, one upstream GET each', async t => {
  const { up, h } = await startWithUpstream(t, { PREFETCH_CONCURRENCY: '8' })
  const img = addImage(up, 'library/app', '1', [200_000, 300_000, 100_000])
  const m = await fetchThrough(h, HUB, '/v2/library/app/manifests/1', { headers: { accept: OCI_MANIFEST } })
  t.equal(m.status, 200)
  t.equal(m.headers['x-cache-status'], 'MISS', 'the manifest itself is the client\'s')
  await h.prefetch.idle()
  t.same(img.blobs.map(d => getsOf(up, d)), [1, 1, 1, 1], 'every blob fetched once, before the client asked')
  t.match(h.prefetch.stats(), { started: 4, joined: 0, queued: 0, active: 0 })
  for (const d of img.blobs) {
    const b = await fetchThrough(h, HUB, `/v2/library/app/blobs/${d}`)
    t.equal(sha256(b.body), d)
    t.equal(b.headers['x-cache-status'], 'HIT')
  }
  t.equal(up.count('GET', '/blobs/'), 4, 'nothing more upstream')
  // Warm: the manifest by digest passes again, everything is cached: nothing to do.
  await fetchThrough(h, HUB, `/v2/library/app/manifests/${img.digest}`, { headers: { accept: OCI_MANIFEST } })
  t.equal(h.prefetch.stats().skipped.cached, 4, 'cached blobs are skipped')
  t.equal(h.prefetch.stats().started, 4)
})

t.test('a client asking for a blob being prefetched joins that download: one upstream GET', async t => {
  let filling!: (fill: BlobFill) => void
  const fillOf = new Promise<BlobFill>(resolve => { filling = resolve })
  let layer = ''
  const { up, h } = await startWithUpstream(t, { PREFETCH_CONCURRENCY: '8' }, {
    fillHook: (step, fill) => { if (step === 'first-byte' && fill.digest.value === layer) filling(fill) },
  })
  const img = addImage(up, 'library/app', '1', [500_000])
  layer = img.blobs[1]
  const data = up.blobs.get(layer)!
  // The layer's upstream answer stops half way until released: the prefetch's fill is in flight
  // whenever the client's request arrives.
  let release!: () => void
  const held = new Promise<void>(resolve => { release = resolve })
  up.fault = async (_req, res, hit) => {
    if (hit.method !== 'GET' || !hit.path.endsWith(layer)) return false
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length })
    res.write(data.subarray(0, 250_000))
    await held
    res.end(data.subarray(250_000))
    return true
  }
  await fetchThrough(h, HUB, `/v2/library/app/manifests/${img.digest}`, { headers: { accept: OCI_MANIFEST } })
  const fill = await fillOf
  const attached = new Promise(resolve => fill.once('attach', resolve))
  const client = fetchThrough(h, HUB, `/v2/library/app/blobs/${layer}`)
  await attached
  release()
  const b = await client
  t.equal(b.status, 200)
  t.equal(sha256(b.body), layer, 'whole and right')
  t.equal(b.headers['x-cache-status'], 'JOINED', 'the client joined the prefetch\'s fill')
  t.equal(getsOf(up, layer), 1, 'one upstream GET for the two of them')
  await h.prefetch.idle()
  t.equal(h.prefetch.stats().joined, 1, 'counted as joined')
})

t.test('PREFETCH_CONCURRENCY bounds the downloads at once', async t => {
  const { up, h } = await startWithUpstream(t, { PREFETCH_CONCURRENCY: '2' })
  const img = addImage(up, 'library/app', '1', [10_000, 20_000, 30_000, 40_000])
  const gate = gateBlobGets(up, () => true)
  await fetchThrough(h, HUB, '/v2/library/app/manifests/1', { headers: { accept: OCI_MANIFEST } })
  await gate.atLeast(2)
  t.match(h.prefetch.stats(), { active: 2, queued: 3 }, 'two downloading, three waiting')
  t.same(gate.arrived, img.blobs.slice(0, 2), 'in the manifest\'s order: config, then layers')
  gate.release(img.blobs[0])
  await gate.atLeast(3)
  t.equal(gate.arrived[2], img.blobs[2], 'a slot freed: the next one starts')
  t.match(h.prefetch.stats(), { active: 2, queued: 2 })
  gate.releaseAll()
  for (let n = 4; n <= 5; n++) { await gate.atLeast(n); gate.releaseAll() }
  await h.prefetch.idle()
  t.equal(up.count('GET', '/blobs/'), 5)
  t.equal(h.prefetch.stats().started, 5)
})

t.test('PREFETCH_CONCURRENCY=0 turns it off', async t => {
  const { up, h } = await startWithUpstream(t, { PREFETCH_CONCURRENCY: '0' })
  const img = addImage(up, 'library/app', '1', [10_000])
  await fetchThrough(h, HUB, '/v2/library/app/manifests/1', { headers: { accept: OCI_MANIFEST } })
  t.equal(h.prefetch.enabled, false)
  t.match(h.prefetch.stats(), { started: 0, queued: 0, active: 0 }, 'nothing queued when the manifest went out')
  t.equal(up.count('GET', '/blobs/'), 0)
  const b = await fetchThrough(h, HUB, `/v2/library/app/blobs/${img.blobs[1]}`)
  t.equal(b.headers['x-cache-status'], 'MISS', 'the client fetches it itself')
})

t.test('an index prefetches nothing; the platform manifest the client picks prefetches its own blobs only', async t => {
  const { up, h } = await startWithUpstream(t, { PREFETCH_CONCURRENCY: '8' })
  const amd64 = addImage(up, 'library/multi', undefined, [10_000, 20_000])
  const arm64 = addImage(up, 'library/multi', undefined, [30_000, 40_000])
  up.addManifest('library/multi', '1', {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [
      { mediaType: OCI_MANIFEST, digest: amd64.digest, size: up.manifests.get('library/multi')!.get(amd64.digest)!.body.length, platform: { architecture: 'amd64', os: 'linux' } },
      { mediaType: OCI_MANIFEST, digest: arm64.digest, size: up.manifests.get('library/multi')!.get(arm64.digest)!.body.length, platform: { architecture: 'arm64', os: 'linux' } },
    ],
  }, OCI_INDEX)
  const i = await fetchThrough(h, HUB, '/v2/library/multi/manifests/1', { headers: { accept: `${OCI_INDEX}, ${OCI_MANIFEST}` } })
  t.equal(i.headers['content-type'], OCI_INDEX)
  t.match(h.prefetch.stats(), { started: 0, queued: 0, active: 0 }, 'the index queued nothing')
  t.equal(up.count('GET', amd64.digest) + up.count('GET', arm64.digest), 0, 'nor any platform manifest')
  await fetchThrough(h, HUB, `/v2/library/multi/manifests/${amd64.digest}`, { headers: { accept: OCI_MANIFEST } })
  await h.prefetch.idle()
  t.same(amd64.blobs.map(d => getsOf(up, d)), [1, 1, 1], 'the requested platform\'s blobs')
  t.same(arm64.blobs.map(d => getsOf(up, d)), [0, 0, 0], 'never the other platform\'s')
})

t.test('PREFETCH_IMAGE_BUDGET stops an image\'s prefetch at the first blob past it', async t => {
  const { up, h } = await startWithUpstream(t, { PREFETCH_CONCURRENCY: '8', PREFETCH_IMAGE_BUDGET: '150k' })
  const img = addImage(up, 'library/big', '1', [100_000, 100_000, 10_000])
  await fetchThrough(h, HUB, '/v2/library/big/manifests/1', { headers: { accept: OCI_MANIFEST } })
  await h.prefetch.idle()
  t.same(img.blobs.map(d => getsOf(up, d)), [1, 1, 0, 0], 'config and first layer fit in 150k; the rest waits for the client')
  t.equal(h.prefetch.stats().skipped.budget, 2)
  const b = await fetchThrough(h, HUB, `/v2/library/big/blobs/${img.blobs[2]}`)
  t.equal(b.headers['x-cache-status'], 'MISS')
})

t.test('an upstream 429 on a prefetch stops prefetching from that host', async t => {
  const { up, h } = await startWithUpstream(t, { PREFETCH_CONCURRENCY: '1' })
  const img = addImage(up, 'library/app', '1', [1000, 2000, 3000])
  up.fault = (_req, res, hit) => {
    if (hit.method !== 'GET' || !hit.path.includes('/blobs/')) return false
    res.setHeader('retry-after', '3600')
    up.ociError(res, 429, 'TOOMANYREQUESTS')
    return true
  }
  await fetchThrough(h, HUB, '/v2/library/app/manifests/1', { headers: { accept: OCI_MANIFEST } })
  await h.prefetch.idle()
  t.equal(up.count('GET', '/blobs/'), 1, 'one prefetch met the 429; nothing more was asked')
  t.match(h.prefetch.stats().skipped, { 'upstream-error': 1, ratelimit: 3 })
  up.fault = undefined
  const b = await fetchThrough(h, HUB, `/v2/library/app/blobs/${img.blobs[3]}`)
  t.equal(b.status, 200, 'clients still fetch what they ask for')
})

t.test('a client\'s own request is not queued behind prefetches', async t => {
  const { up, h } = await startWithUpstream(t, { PREFETCH_CONCURRENCY: '1' })
  const img = addImage(up, 'library/app', '1', [50_000, 60_000, 70_000])
  const last = img.blobs[3]
  const gate = gateBlobGets(up, d => d !== last)
  await fetchThrough(h, HUB, '/v2/library/app/manifests/1', { headers: { accept: OCI_MANIFEST } })
  await gate.atLeast(1)
  t.match(h.prefetch.stats(), { active: 1, queued: 3 }, 'the only prefetch slot is held upstream')
  const b = await fetchThrough(h, HUB, `/v2/library/app/blobs/${last}`)
  t.equal(b.status, 200)
  t.equal(sha256(b.body), last)
  t.equal(b.headers['x-cache-status'], 'MISS', 'fetched for the client at once, while the prefetch still waits')
  t.match(h.prefetch.stats(), { active: 1 })
  gate.releaseAll()
  for (let n = 2; n <= 4; n++) { await gate.atLeast(n); gate.releaseAll() }
  await h.prefetch.idle()
  t.equal(getsOf(up, last), 1, 'the queued prefetch of it found it cached')
  t.equal(h.prefetch.stats().skipped.cached, 1)
})
