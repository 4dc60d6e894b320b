// Conformance, "Pull" category (spec: end-1, end-2, end-3): manifests by tag and digest, blobs with
// Range, HEAD, 404s, and the media types docker and OCI clients push.
import t from 'tap'
import { startRegistry, rawRequest, pushBlob, pushImage, digestOf, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST } from './fixtures/registry-harness.js'

const h = await startRegistry()
t.teardown(h.close)

t.test('end-1: GET /v2/ answers 200 with the API version header', async t => {
  const r = await h.req('GET', '/v2/')
  t.equal(r.status, 200)
  t.equal(r.headers['docker-distribution-api-version'], 'registry/2.0')
})

t.test('end-3: manifest by tag and by digest, GET and HEAD', async t => {
  const img = await pushImage(h, 'pull/app', 'v1')
  for (const ref of ['v1', img.digest]) {
    const r = await h.req('GET', `/v2/pull/app/manifests/${ref}`)
    t.equal(r.status, 200, ref)
    t.equal(r.headers['content-type'], 'application/vnd.oci.image.manifest.v1+json')
    t.equal(r.headers['docker-content-digest'], img.digest)
    t.same(r.body, img.body, 'the exact bytes pushed')
    t.equal(digestOf(r.body), img.digest)
    const head = await h.req('HEAD', `/v2/pull/app/manifests/${ref}`)
    t.equal(head.status, 200)
    t.equal(head.headers['content-length'], String(img.body.length))
    t.equal(head.headers['docker-content-digest'], img.digest)
    t.equal(head.body.length, 0)
  }
})

t.test('end-3: unknown manifests are 404 MANIFEST_UNKNOWN', async t => {
  await pushImage(h, 'pull/known', 'v1')
  for (const ref of ['nope', digestOf('nothing')]) {
    const r = await h.req('GET', `/v2/pull/known/manifests/${ref}`)
    t.equal(r.status, 404)
    t.equal(r.json().errors[0].code, 'MANIFEST_UNKNOWN')
    t.equal((await h.req('HEAD', `/v2/pull/known/manifests/${ref}`)).status, 404)
  }
  t.equal((await h.req('GET', '/v2/pull/never-pushed/manifests/v1')).status, 404)
})

t.test('end-3: a reference that is neither a tag nor a digest names nothing: 404 MANIFEST_UNKNOWN', async t => {
  await pushImage(h, 'pull/odd', 'v1')
  // The conformance suite's nonexistent reference; then other spellings no tag can have.
  for (const ref of ['.INVALID_MANIFEST_NAME', '-dash', 'a'.repeat(129), 'a%20b']) {
    const r = await h.req('GET', `/v2/pull/odd/manifests/${ref}`)
    t.equal(r.status, 404, ref)
    t.equal(r.json().errors[0].code, 'MANIFEST_UNKNOWN', ref)
    t.equal((await h.req('HEAD', `/v2/pull/odd/manifests/${ref}`)).status, 404, `HEAD ${ref}`)
  }
  const bad = await h.req('GET', '/v2/pull/odd/manifests/sha256:zz')
  t.equal(bad.status, 400, 'a malformed digest is still the client\'s error')
  t.equal(bad.json().errors[0].code, 'DIGEST_INVALID')
})

t.test('end-2: blob GET and HEAD with digest header, 404 in another repository', async t => {
  const data = Buffer.from('some blob bytes 0123456789')
  const digest = await pushBlob(h, 'pull/blobs', data)
  const r = await h.req('GET', `/v2/pull/blobs/blobs/${digest}`)
  t.equal(r.status, 200)
  t.same(r.body, data)
  t.equal(r.headers['docker-content-digest'], digest)
  t.equal(r.headers['content-length'], String(data.length))
  const head = await h.req('HEAD', `/v2/pull/blobs/blobs/${digest}`)
  t.equal(head.status, 200)
  t.equal(head.headers['content-length'], String(data.length))
  t.equal(head.headers['docker-content-digest'], digest)
  const other = await h.req('GET', `/v2/pull/other/blobs/${digest}`)
  t.equal(other.status, 404, 'a blob is visible only in repositories that link it')
  t.equal(other.json().errors[0].code, 'BLOB_UNKNOWN')
  t.equal((await h.req('HEAD', `/v2/pull/blobs/blobs/${digestOf('absent')}`)).status, 404)
})

t.test('end-2: Range requests answer 206 with Content-Range, 416 when unsatisfiable', async t => {
  const data = Buffer.from('0123456789abcdefghij')
  const digest = await pushBlob(h, 'pull/range', data)
  const cases: Array<[string, string, string]> = [
    ['bytes=0-4', '01234', 'bytes 0-4/20'],
    ['bytes=15-', 'fghij', 'bytes 15-19/20'],
    ['bytes=-3', 'hij', 'bytes 17-19/20'],
    ['bytes=18-100', 'ij', 'bytes 18-19/20'],
  ]
  for (const [range, body, contentRange] of cases) {
    const r = await h.req('GET', `/v2/pull/range/blobs/${digest}`, { headers: { range } })
    t.equal(r.status, 206, range)
    t.equal(r.body.toString(), body, range)
    t.equal(r.headers['content-range'], contentRange, range)
  }
  const bad = await h.req('GET', `/v2/pull/range/blobs/${digest}`, { headers: { range: 'bytes=20-30' } })
  t.equal(bad.status, 416)
  t.equal(bad.headers['content-range'], 'bytes */20')
})

t.test('Docker schema2 manifest, manifest list and OCI index round-trip with their media types', async t => {
  const amd = await pushImage(h, 'pull/multi', 'amd64', { mediaType: DOCKER_MANIFEST, layer: 'amd64 layer' })
  const arm = await pushImage(h, 'pull/multi', 'arm64', { mediaType: DOCKER_MANIFEST, layer: 'arm64 layer' })
  const entries = [amd, arm].map((m, i) => ({ mediaType: DOCKER_MANIFEST, digest: m.digest, size: m.body.length, platform: { architecture: ['amd64', 'arm64'][i], os: 'linux' } }))
  for (const [mediaType, tag] of [[DOCKER_LIST, 'list'], [OCI_INDEX, 'index']]) {
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, manifests: entries }))
    const put = await h.req('PUT', `/v2/pull/multi/manifests/${tag}`, { body, headers: { 'content-type': mediaType } })
    t.equal(put.status, 201, mediaType)
    const r = await h.req('GET', `/v2/pull/multi/manifests/${tag}`)
    t.equal(r.headers['content-type'], mediaType)
    t.equal(r.headers['docker-content-digest'], digestOf(body))
    const child = await h.req('GET', `/v2/pull/multi/manifests/${amd.digest}`)
    t.equal(child.headers['content-type'], DOCKER_MANIFEST)
  }
})

t.test('sha512: blobs and manifests addressed by sha512 digests', async t => {
  const data = Buffer.from('sha512 content')
  const digest = digestOf(data, 'sha512')
  const post = await h.req('POST', `/v2/pull/sha512/blobs/uploads/?digest=${digest}`, { body: data })
  t.equal(post.status, 201)
  t.equal(post.headers['docker-content-digest'], digest)
  const r = await h.req('GET', `/v2/pull/sha512/blobs/${digest}`)
  t.same(r.body, data)
  const config = await pushBlob(h, 'pull/sha512', '{}')
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: 2 }, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: data.length }] }))
  const md = digestOf(manifest, 'sha512')
  const put = await h.req('PUT', `/v2/pull/sha512/manifests/${md}`, { body: manifest, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })
  t.equal(put.status, 201)
  t.equal(put.headers['docker-content-digest'], md)
  const get = await h.req('GET', `/v2/pull/sha512/manifests/${md}`)
  t.same(get.body, manifest)
})

t.test('bad names and digests on reads: NAME_INVALID and DIGEST_INVALID', async t => {
  const cases: Array<[string, string]> = [
    ['/v2/Upper/manifests/v1', 'NAME_INVALID'],
    ['/v2/a/../b/manifests/v1', 'NAME_INVALID'],
    ['/v2/a//b/manifests/v1', 'NAME_INVALID'],
    ['/v2/a/%2e%2e/b/blobs/sha256:' + 'a'.repeat(64), 'NAME_INVALID'],
    [`/v2/${'a'.repeat(256)}/tags/list`, 'NAME_INVALID'],
    ['/v2/ok/blobs/sha256:abc', 'DIGEST_INVALID'],
    ['/v2/ok/blobs/md5:d41d8cd98f00b204e9800998ecf8427e', 'DIGEST_INVALID'],
    ['/v2/ok/blobs/sha256:' + 'A'.repeat(64), 'DIGEST_INVALID'],
  ]
  for (const [path, code] of cases) {
    const r = await rawRequest(h, 'GET', path)
    t.equal(r.status, 400, path)
    t.equal(JSON.parse(r.body).errors[0].code, code, path)
  }
})
