// The pull-through cache through a real CONNECT + TLS client: repeat pulls, HEAD and Range on
// cached blobs, redirects, tag resolution (shared HEADs, Accept, multi-arch), cache keys.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { sha256 } from '../../helpers/fake-upstream.js'
import { startHarness, fetchThrough, type Harness, startWithUpstream } from './harness.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const ACCEPT = `${OCI_INDEX}, ${OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json`
const HUB = 'registry-1.docker.io'

const startBoth = async (t: Test, env: Record<string, string> = {}): ReturnType<typeof startWithUpstream> => await startWithUpstream(t, env, { hosts: [HUB, 'ghcr.io', 'quay.io', 'cdn.test'] })

/** What `docker pull` does for a one-platform image: the tag, then every blob. */
async function pull (h: Harness, host: string, repo: string, tag: string): Promise<Array<{ path: string, status: number, cache: string | undefined, upstreamStatus: string | undefined }>> {
  const seen = []
  const m = await fetchThrough(h, host, `/v2/${repo}/manifests/${tag}`, { headers: { accept: ACCEPT, authorization: 'Bearer client-token' } })
  seen.push({ path: 'manifest', status: m.status, cache: m.headers['x-cache-status'] as string, upstreamStatus: m.headers['x-docker-registry-proxy-cache-upstream-status'] as string })
  const manifest = JSON.parse(m.body.toString())
  for (const d of [manifest.config.digest, ...manifest.layers.map((l: any) => l.digest)]) {
    const b = await fetchThrough(h, host, `/v2/${repo}/blobs/${d}`, { headers: { authorization: 'Bearer client-token' } })
    if (sha256(b.body) !== d) throw new Error(`blob ${d} came back as ${sha256(b.body)}`)
    seen.push({ path: d, status: b.status, cache: b.headers['x-cache-status'] as string, upstreamStatus: b.headers['x-docker-registry-proxy-cache-upstream-status'] as string })
  }
  return seen
}

t.test('1. pull, rmi, pull: the second pull only HEADs the tag', async t => {
  const { up, h } = await startBoth(t)
  const img = up.addImage('library/alpine', '3.20', randomBytes(300_000))
  const first = await pull(h, HUB, 'library/alpine', '3.20')
  t.same(first.map(s => s.cache), ['MISS', 'MISS', 'MISS'])
  t.equal(up.count('GET', '/blobs/'), 2)
  const before = up.hits.length
  const second = await pull(h, HUB, 'library/alpine', '3.20')
  const during = up.hits.slice(before)
  t.same(during.map(x => `${x.method} ${x.path}`), ['HEAD /v2/library/alpine/manifests/3.20'], 'only the tag is checked upstream')
  t.equal(during[0].headers.accept, ACCEPT, 'the HEAD carries the client\'s Accept')
  t.equal(during[0].headers.authorization, 'Bearer client-token', 'and its Authorization')
  t.same(second.map(s => s.cache), ['HIT', 'HIT', 'HIT'])
  t.same(second.map(s => s.upstreamStatus), ['REVALIDATED', 'HIT', 'HIT'], 'rpardini\'s header, nginx vocabulary')
  t.equal(first[0].status, 200)
  t.equal(img.manifest.digest, sha256((await fetchThrough(h, HUB, `/v2/library/alpine/manifests/${img.manifest.digest}`)).body))
})

t.test('1. with ENABLE_MANIFEST_CACHE a fresh tier answers without any upstream request', async t => {
  const { up, h } = await startBoth(t, { ENABLE_MANIFEST_CACHE: 'true' })
  up.addImage('library/alpine', 'latest', randomBytes(1000))
  await pull(h, HUB, 'library/alpine', 'latest')
  const before = up.hits.length
  const again = await pull(h, HUB, 'library/alpine', 'latest')
  t.equal(up.hits.length, before, 'nothing upstream while the default tier (1h) is fresh')
  t.same(again.map(s => s.cache), ['HIT', 'HIT', 'HIT'])
  t.equal(again[0].upstreamStatus, 'HIT')
})

t.test('5. cached blobs answer HEAD and Range', async t => {
  const { up, h } = await startBoth(t)
  const data = randomBytes(100_000)
  const d = up.addBlob(data)
  await fetchThrough(h, HUB, `/v2/library/x/blobs/${d}`)
  const gets = up.count('GET', '/blobs/')
  const head = await fetchThrough(h, HUB, `/v2/library/x/blobs/${d}`, { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.headers['content-length'], String(data.length))
  t.equal(head.headers['docker-content-digest'], d)
  t.equal(head.headers['content-type'], 'application/octet-stream')
  t.equal(head.headers['x-cache-status'], 'HIT')
  const part = await fetchThrough(h, HUB, `/v2/library/x/blobs/${d}`, { headers: { range: 'bytes=10-19' } })
  t.equal(part.status, 206)
  t.equal(part.headers['content-range'], `bytes 10-19/${data.length}`)
  t.ok(part.body.equals(data.subarray(10, 20)))
  const tail = await fetchThrough(h, HUB, `/v2/library/x/blobs/${d}`, { headers: { range: 'bytes=-5' } })
  t.ok(tail.body.equals(data.subarray(data.length - 5)))
  const bad = await fetchThrough(h, HUB, `/v2/library/x/blobs/${d}`, { headers: { range: `bytes=${data.length}-` } })
  t.equal(bad.status, 416)
  t.equal(bad.headers['content-range'], `bytes */${data.length}`)
  t.equal(up.count('GET', '/blobs/'), gets, 'none of these went upstream')
  t.equal(up.count('HEAD', '/blobs/'), 0)
})

t.test('5/7. a HEAD never becomes an upstream GET', async t => {
  const { up, h } = await startBoth(t)
  const d = up.addBlob(randomBytes(1000))
  up.addImage('library/y', '1', 'layer')
  const hb = await fetchThrough(h, HUB, `/v2/library/y/blobs/${d}`, { method: 'HEAD' })
  t.equal(hb.status, 200)
  t.equal(hb.headers['content-length'], '1000')
  const hm = await fetchThrough(h, HUB, '/v2/library/y/manifests/1', { method: 'HEAD', headers: { accept: ACCEPT } })
  t.equal(hm.status, 200)
  t.ok(hm.headers['docker-content-digest'])
  t.equal(up.hits.filter(x => x.method === 'GET').length, 0)
})

t.test('6. redirects are followed, Authorization stays home, the client never sees a 3xx', async t => {
  const { up, h } = await startBoth(t)
  const data = randomBytes(50_000)
  const d = up.addBlob(data)
  up.cdnOrigin = 'https://cdn.test'
  const r = await fetchThrough(h, HUB, `/v2/library/z/blobs/${d}`, { headers: { authorization: 'Bearer secret' } })
  t.equal(r.status, 200)
  t.ok(r.body.equals(data))
  const cdn = up.hits.find(x => x.host === 'cdn.test' && x.path.startsWith('/cdn/'))
  t.ok(cdn, 'the CDN was asked')
  t.equal(cdn?.headers.authorization, undefined, 'Authorization dropped when leaving the upstream host')
  t.equal(up.hits.find(x => x.host === HUB && x.path.includes('/blobs/'))?.headers.authorization, 'Bearer secret')

  // A relative Location on the same host keeps credentials and works too.
  const data2 = randomBytes(1000)
  const d2 = up.addBlob(data2)
  up.cdnOrigin = undefined
  up.fault = (req, res, hit) => {
    if (hit.path === `/v2/library/z/blobs/${d2}`) { res.writeHead(307, { location: `/cdn/${d2}`, 'content-length': 0 }); res.end(); return true }
    return false
  }
  const r2 = await fetchThrough(h, HUB, `/v2/library/z/blobs/${d2}`, { headers: { authorization: 'Bearer secret' } })
  t.equal(r2.status, 200)
  t.ok(r2.body.equals(data2))
  t.equal(up.hits.filter(x => x.path === `/cdn/${d2}`)[0]?.headers.authorization, 'Bearer secret')

  // A redirect to nowhere: the client sees the final 404, and nothing is cached.
  const d3 = sha256(Buffer.from('missing'))
  up.fault = (req, res, hit) => {
    if (hit.path.includes(d3) && hit.path.startsWith('/v2/')) { res.writeHead(302, { location: `https://cdn.test/cdn/${d3}`, 'content-length': 0 }); res.end(); return true }
    return false
  }
  const r3 = await fetchThrough(h, HUB, `/v2/library/z/blobs/${d3}`)
  t.equal(r3.status, 404)
  const r4 = await fetchThrough(h, HUB, `/v2/library/z/blobs/${d3}`)
  t.equal(r4.status, 404)
  t.equal(up.hits.filter(x => x.path === `/v2/library/z/blobs/${d3}`).length, 2, 'the 3xx was not cached')
})

t.test('7. concurrent resolutions of one tag share one HEAD; different Accept does not', async t => {
  const { up, h } = await startBoth(t)
  up.addImage('library/busy', 'v1', 'layer')
  let release: () => void = () => {}
  const held = new Promise<void>(resolve => { release = resolve })
  up.fault = async (req, res, hit) => { if (hit.method === 'HEAD') await held; return false }
  const n = 6
  const clients = Array.from({ length: n }, async () => await fetchThrough(h, HUB, '/v2/library/busy/manifests/v1', { headers: { accept: ACCEPT } }))
  await h.handledAtLeast(n)
  const other = fetchThrough(h, HUB, '/v2/library/busy/manifests/v1', { headers: { accept: OCI_MANIFEST } })
  await h.handledAtLeast(n + 1)
  release()
  const all = await Promise.all(clients)
  t.ok(all.every(r => r.status === 200))
  t.equal((await other).status, 200)
  t.equal(up.count('HEAD', '/manifests/v1'), 2, 'one HEAD for the six, one for the other Accept')
  t.equal(up.count('GET', '/manifests/'), 1, 'the manifest itself was fetched once (by digest)')
})

t.test('7. a multi-arch index and its platform manifests are all cached', async t => {
  const { up, h } = await startBoth(t)
  const amd = up.addImage('library/multi', 'amd64-only', 'amd64 layer').manifest
  const arm = up.addImage('library/multi', 'arm64-only', 'arm64 layer').manifest
  const index = up.addManifest('library/multi', '1.0', {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [
      { mediaType: OCI_MANIFEST, digest: amd.digest, size: amd.body.length, platform: { architecture: 'amd64', os: 'linux' } },
      { mediaType: OCI_MANIFEST, digest: arm.digest, size: arm.body.length, platform: { architecture: 'arm64', os: 'linux' } },
    ],
  }, OCI_INDEX)
  const round = async (): Promise<string[]> => {
    const i = await fetchThrough(h, HUB, '/v2/library/multi/manifests/1.0', { headers: { accept: ACCEPT } })
    t.equal(i.headers['content-type'], OCI_INDEX)
    t.equal(i.headers['docker-content-digest'], index.digest)
    const statuses = [i.headers['x-cache-status'] as string]
    for (const m of [amd, arm]) {
      const r = await fetchThrough(h, HUB, `/v2/library/multi/manifests/${m.digest}`, { headers: { accept: ACCEPT } })
      t.equal(r.headers['content-type'], OCI_MANIFEST, 'media type kept')
      t.equal(sha256(r.body), m.digest)
      statuses.push(r.headers['x-cache-status'] as string)
    }
    return statuses
  }
  t.same(await round(), ['MISS', 'MISS', 'MISS'])
  const gets = up.count('GET', '/manifests/')
  t.same(await round(), ['HIT', 'HIT', 'HIT'])
  t.equal(up.count('GET', '/manifests/'), gets, 'no manifest GET the second time')
})

t.test('10. blobs are shared by every repository and upstream; tags are per host', async t => {
  const { up, h } = await startBoth(t)
  const data = randomBytes(10_000)
  const d = up.addBlob(data)
  await fetchThrough(h, HUB, `/v2/library/a/blobs/${d}`)
  const r1 = await fetchThrough(h, 'ghcr.io', `/v2/org/b/blobs/${d}`)
  const r2 = await fetchThrough(h, 'quay.io', `/v2/c/d/e/blobs/${d}`)
  t.equal(r1.headers['x-cache-status'], 'HIT')
  t.equal(r2.headers['x-cache-status'], 'HIT')
  t.equal(up.count('GET', '/blobs/'), 1)

  // Same repository:tag path on two upstreams: two different tag records.
  const one = up.addManifest('same/name', 'v1', { schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [], from: 'first' }, OCI_MANIFEST)
  await fetchThrough(h, HUB, '/v2/same/name/manifests/v1', { headers: { accept: ACCEPT } })
  const two = up.addManifest('same/name', 'v1', { schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [], from: 'second' }, OCI_MANIFEST)
  up.fault = (req, res, hit) => {
    // the Hub keeps answering the first manifest for the tag; ghcr.io answers the second
    if (hit.host === HUB && hit.path === '/v2/same/name/manifests/v1') {
      res.setHeader('docker-content-digest', one.digest)
      up.send(res, 200, OCI_MANIFEST, one.body, req.method)
      return true
    }
    return false
  }
  const hub = await fetchThrough(h, HUB, '/v2/same/name/manifests/v1', { headers: { accept: ACCEPT } })
  const ghcr = await fetchThrough(h, 'ghcr.io', '/v2/same/name/manifests/v1', { headers: { accept: ACCEPT } })
  t.equal(sha256(hub.body), one.digest)
  t.equal(sha256(ghcr.body), two.digest)
})

t.test('issue 20: tag HEADs and discarded small bodies leave the upstream connection alive', async t => {
  const { up, h } = await startBoth(t)
  up.addImage('library/keep', '1', randomBytes(1000))
  const first = await fetchThrough(h, HUB, '/v2/library/keep/manifests/1', { headers: { accept: ACCEPT } })
  t.equal(first.status, 200)
  const before = up.connections
  for (let i = 0; i < 20; i++) {
    const r = await fetchThrough(h, HUB, '/v2/library/keep/manifests/1', { headers: { accept: ACCEPT } })
    t.equal(r.headers['x-cache-status'], 'HIT', `resolution ${i + 1} is a HIT after a HEAD`)
  }
  t.equal(up.count('HEAD', '/manifests/1'), 21, 'each resolution asked the upstream with a HEAD')
  t.ok(up.connections - before <= 1, `20 HEADs opened ${up.connections - before} new upstream connections (≤ 1)`)
})
