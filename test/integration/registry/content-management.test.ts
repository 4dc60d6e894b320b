// Conformance, "Content Management" category (spec: end-9, end-10): deleting tags, manifests and
// blobs, with 202 on success and 404 for what is not there.
import t from 'tap'
import { startRegistry, pushBlob, pushImage, digestOf } from './fixtures/registry-harness.js'

const h = await startRegistry()
t.teardown(h.close)

t.test('end-9: deleting a tag keeps the manifest', async t => {
  const img = await pushImage(h, 'manage/tags', 'v1')
  await h.req('PUT', '/v2/manage/tags/manifests/v2', { body: img.body, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })
  const del = await h.req('DELETE', '/v2/manage/tags/manifests/v1')
  t.equal(del.status, 202)
  t.equal((await h.req('GET', '/v2/manage/tags/manifests/v1')).status, 404)
  t.equal((await h.req('GET', '/v2/manage/tags/manifests/v2')).status, 200)
  t.equal((await h.req('GET', `/v2/manage/tags/manifests/${img.digest}`)).status, 200)
  const again = await h.req('DELETE', '/v2/manage/tags/manifests/v1')
  t.equal(again.status, 404)
  t.equal(again.json().errors[0].code, 'MANIFEST_UNKNOWN')
})

t.test('end-9: deleting a manifest by digest removes it and the tags on it', async t => {
  const img = await pushImage(h, 'manage/manifests', 'v1')
  await h.req('PUT', '/v2/manage/manifests/manifests/stable', { body: img.body, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })
  const del = await h.req('DELETE', `/v2/manage/manifests/manifests/${img.digest}`)
  t.equal(del.status, 202)
  t.equal((await h.req('GET', `/v2/manage/manifests/manifests/${img.digest}`)).status, 404)
  t.equal((await h.req('GET', '/v2/manage/manifests/manifests/v1')).status, 404)
  t.same((await h.req('GET', '/v2/manage/manifests/tags/list')).json().tags, [])
  t.equal((await h.req('DELETE', `/v2/manage/manifests/manifests/${img.digest}`)).status, 404)
  t.equal((await h.req('GET', `/v2/manage/manifests/blobs/${img.layer}`)).status, 200, 'blobs stay until gc')
})

t.test('end-10: deleting a blob unlinks it from the repository only', async t => {
  const digest = await pushBlob(h, 'manage/blobs', 'to be deleted')
  await h.req('POST', `/v2/manage/other/blobs/uploads/?mount=${digest}&from=manage/blobs`)
  const del = await h.req('DELETE', `/v2/manage/blobs/blobs/${digest}`)
  t.equal(del.status, 202)
  t.equal((await h.req('HEAD', `/v2/manage/blobs/blobs/${digest}`)).status, 404)
  t.equal((await h.req('HEAD', `/v2/manage/other/blobs/${digest}`)).status, 200, 'other repositories keep it')
  const again = await h.req('DELETE', `/v2/manage/blobs/blobs/${digest}`)
  t.equal(again.status, 404)
  t.equal(again.json().errors[0].code, 'BLOB_UNKNOWN')
  t.equal((await h.req('DELETE', `/v2/manage/blobs/blobs/${digestOf('never')}`)).status, 404)
})

t.test('a deleted manifest can be pushed again', async t => {
  const img = await pushImage(h, 'manage/again', 'v1')
  await h.req('DELETE', `/v2/manage/again/manifests/${img.digest}`)
  const put = await h.req('PUT', '/v2/manage/again/manifests/v1', { body: img.body, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })
  t.equal(put.status, 201)
  t.equal((await h.req('GET', '/v2/manage/again/manifests/v1')).headers['docker-content-digest'], img.digest)
})
