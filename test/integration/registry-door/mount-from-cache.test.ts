// Retagging an upstream image into a hosted name without downloading it again: a cross-repository
// mount whose `from` is an upstream namespace copies the blob out of the pull-through cache (201),
// and the whole image can be re-pushed under the hosted name with zero upstream blob GETs.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { sha256 } from '../../helpers/fake-upstream.js'
import { startDoor, ACCEPT, OCI_MANIFEST, upstreamBlobGets } from './fixtures/door-harness.js'

t.test('mount from docker.io/library/alpine into team/base: 201 from the cache, no upstream bytes', async t => {
  const d = await startDoor(t)
  const img = d.up.addImage('library/alpine', '3.20', randomBytes(300_000))
  // Pull once through the registry port: the cache now holds the manifest, config and layer.
  const m = await d.reg('GET', '/v2/docker.io/library/alpine/manifests/3.20', { headers: { accept: ACCEPT } })
  for (const digest of [img.config, img.layer]) t.equal((await d.reg('GET', `/v2/docker.io/library/alpine/blobs/${digest}`)).status, 200)
  const blobGets = upstreamBlobGets(d.up)
  const hitsBefore = d.up.hits.length

  for (const [digest, from] of [[img.layer, 'docker.io/library/alpine'], [img.config, 'proxy/docker.io/library/alpine']]) {
    const r = await d.reg('POST', `/v2/team/base/blobs/uploads/?mount=${digest}&from=${encodeURIComponent(from)}`)
    t.equal(r.status, 201, `mount ${digest.slice(0, 16)} from ${from}: 201`)
    t.equal(r.headers.location, `/v2/team/base/blobs/${digest}`)
    t.equal(r.headers['docker-content-digest'], digest)
  }
  const blob = await d.reg('GET', `/v2/team/base/blobs/${img.layer}`)
  t.equal(blob.status, 200, 'the hosted repository serves the mounted layer')
  t.equal(sha256(blob.body), img.layer)
  t.equal(blob.headers['x-cache-status'], undefined, 'from hosted storage, not the cache')

  // The manifest push that completes a retag (what `skopeo copy` ends with).
  const put = await d.reg('PUT', '/v2/team/base/manifests/3.20', { headers: { 'content-type': OCI_MANIFEST }, body: m.body })
  t.equal(put.status, 201, 'the retagged manifest is accepted: every blob it references is there')
  const got = await d.reg('GET', '/v2/team/base/manifests/3.20', { headers: { accept: ACCEPT } })
  t.equal(got.headers['docker-content-digest'], img.manifest.digest, 'same digest as upstream')
  t.equal(upstreamBlobGets(d.up), blobGets, 'zero upstream blob GETs for the retag')
  t.equal(d.up.hits.length, hitsBefore, 'and no upstream request at all')
})

t.test('a mount of a blob the cache does not hold: 202 and an upload session, never an upstream fetch', async t => {
  const d = await startDoor(t)
  const img = d.up.addImage('library/alpine', '3.20', randomBytes(1000))
  const r = await d.reg('POST', `/v2/team/base/blobs/uploads/?mount=${img.layer}&from=docker.io/library/alpine`)
  t.equal(r.status, 202, 'not cached: the client uploads it')
  t.match(r.headers.location, /^\/v2\/team\/base\/blobs\/uploads\//)
  t.equal(d.up.hits.length, 0, 'a mount never fetches from the upstream')
  const hostedFrom = await d.reg('POST', `/v2/team/base/blobs/uploads/?mount=${img.layer}&from=other/repo`)
  t.equal(hostedFrom.status, 202, 'a hosted `from` without the blob: 202 as before')
})

t.test('a mount from an upstream namespace when hosted storage already has the content links it', async t => {
  const d = await startDoor(t)
  const img = d.up.addImage('library/alpine', '3.20', randomBytes(10_000))
  await d.reg('GET', `/v2/docker.io/library/alpine/blobs/${img.layer}`)
  t.equal((await d.reg('POST', `/v2/team/one/blobs/uploads/?mount=${img.layer}&from=docker.io/library/alpine`)).status, 201)
  t.equal((await d.reg('POST', `/v2/team/two/blobs/uploads/?mount=${img.layer}&from=docker.io/library/alpine`)).status, 201)
  t.equal((await d.reg('HEAD', `/v2/team/two/blobs/${img.layer}`)).headers['content-length'], '10000')
  t.equal((await d.reg('HEAD', `/v2/team/three/blobs/${img.layer}`)).status, 404, 'still unknown to a repository that did not mount it')
})
