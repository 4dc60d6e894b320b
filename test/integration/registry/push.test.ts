// Conformance, "Push" category (spec: end-4a, end-4b, end-5, end-6, end-7, end-11, end-13): every
// way to upload a blob, mounts, manifests with their headers, and streamed large blobs.
import t from 'tap'
import { createHash } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { startRegistry, pushBlob, pushImage, digestOf, OCI_MANIFEST } from './fixtures/registry-harness.js'

const h = await startRegistry()
t.teardown(h.close)

const UUID = /^[0-9a-f-]{36}$/

t.test('end-4a + end-6: POST then PUT with the whole blob', async t => {
  const data = Buffer.from('post then put')
  const digest = digestOf(data)
  const post = await h.req('POST', '/v2/push/a/blobs/uploads/')
  t.equal(post.status, 202)
  t.match(post.headers.location, /^\/v2\/push\/a\/blobs\/uploads\/[0-9a-f-]{36}$/)
  t.match(post.headers['docker-upload-uuid'], UUID)
  t.equal(post.headers.range, '0-0')
  const put = await h.req('PUT', `${post.headers.location}?digest=${digest}`, { body: data, headers: { 'content-type': 'application/octet-stream' } })
  t.equal(put.status, 201)
  t.equal(put.headers.location, `/v2/push/a/blobs/${digest}`)
  t.equal(put.headers['docker-content-digest'], digest)
  const get = await h.req('GET', put.headers.location)
  t.same(get.body, data)
  t.same(await readdir(join(h.dir, 'uploads')), [], 'the session is gone once committed')
})

t.test('end-4b: a single POST with ?digest= creates the blob', async t => {
  const data = Buffer.from('single post')
  const digest = digestOf(data)
  const r = await h.req('POST', `/v2/push/b/blobs/uploads/?digest=${digest}`, { body: data, headers: { 'content-type': 'application/octet-stream' } })
  t.equal(r.status, 201)
  t.equal(r.headers.location, `/v2/push/b/blobs/${digest}`)
  t.equal(r.headers['docker-content-digest'], digest)
  t.equal((await h.req('HEAD', `/v2/push/b/blobs/${digest}`)).status, 200)
})

t.test('end-5 streamed (docker style): POST, one PATCH without Content-Range or length, PUT without body', async t => {
  const chunks = [Buffer.alloc(300000, 1), Buffer.alloc(200000, 2), Buffer.from('tail')]
  const whole = Buffer.concat(chunks)
  const post = await h.req('POST', '/v2/push/stream/blobs/uploads/')
  const patch = await h.req('PATCH', post.headers.location, { body: (async function * () { yield * chunks })() })
  t.equal(patch.status, 202)
  t.equal(patch.headers.range, `0-${whole.length - 1}`)
  t.equal(patch.headers['docker-upload-uuid'], post.headers['docker-upload-uuid'])
  const put = await h.req('PUT', `${patch.headers.location}?digest=${digestOf(whole)}`)
  t.equal(put.status, 201)
  t.same((await h.req('GET', put.headers.location)).body, whole)
})

t.test('end-5 chunked with Content-Range, 416 out of order, end-13 status, last chunk in the PUT', async t => {
  const data = Buffer.from('0123456789abcdefghijKLMNOPQRST')
  const post = await h.req('POST', '/v2/push/chunked/blobs/uploads/', { headers: { 'content-length': '0' } })
  let location = post.headers.location
  const c1 = await h.req('PATCH', location, { body: data.subarray(0, 10), headers: { 'content-range': '0-9', 'content-type': 'application/octet-stream' } })
  t.equal(c1.status, 202)
  t.equal(c1.headers.range, '0-9')
  location = c1.headers.location
  const c2 = await h.req('PATCH', location, { body: data.subarray(10, 20), headers: { 'content-range': '10-19' } })
  t.equal(c2.status, 202)
  t.equal(c2.headers.range, '0-19')
  const again = await h.req('PATCH', location, { body: data.subarray(10, 20), headers: { 'content-range': '10-19' } })
  t.equal(again.status, 416, 'a chunk that does not start at the offset')
  t.equal(again.headers.range, '0-19', 'tells where to resume')
  t.equal(again.headers.location, location)
  const gap = await h.req('PATCH', location, { body: data.subarray(25, 30), headers: { 'content-range': '25-29' } })
  t.equal(gap.status, 416)
  const status = await h.req('GET', location)
  t.equal(status.status, 204)
  t.equal(status.headers.range, '0-19')
  t.equal(status.headers.location, location)
  t.equal(status.headers['docker-upload-uuid'], post.headers['docker-upload-uuid'])
  const put = await h.req('PUT', `${location}?digest=${digestOf(data)}`, { body: data.subarray(20), headers: { 'content-range': '20-29' } })
  t.equal(put.status, 201)
  t.same((await h.req('GET', `/v2/push/chunked/blobs/${digestOf(data)}`)).body, data)
})

t.test('chunked upload finished with sha512 (the running hash was sha256: re-hashed from disk)', async t => {
  const data = Buffer.alloc(100000, 7)
  const post = await h.req('POST', '/v2/push/sha512/blobs/uploads/')
  const patch = await h.req('PATCH', post.headers.location, { body: data, headers: { 'content-range': `0-${data.length - 1}` } })
  const put = await h.req('PUT', `${patch.headers.location}?digest=${digestOf(data, 'sha512')}`)
  t.equal(put.status, 201)
  t.equal(put.headers['docker-content-digest'], digestOf(data, 'sha512'))
})

t.test('DELETE on a session cancels it', async t => {
  const post = await h.req('POST', '/v2/push/cancel/blobs/uploads/')
  await h.req('PATCH', post.headers.location, { body: 'abc', headers: { 'content-range': '0-2' } })
  const del = await h.req('DELETE', post.headers.location)
  t.equal(del.status, 204)
  const status = await h.req('GET', post.headers.location)
  t.equal(status.status, 404)
  t.equal(status.json().errors[0].code, 'BLOB_UPLOAD_UNKNOWN')
  t.equal((await h.req('PATCH', post.headers.location, { body: 'x' })).status, 404)
})

t.test('a session belongs to its repository', async t => {
  const post = await h.req('POST', '/v2/push/mine/blobs/uploads/')
  const id = post.headers['docker-upload-uuid']
  t.equal((await h.req('GET', `/v2/push/theirs/blobs/uploads/${id}`)).status, 404)
  t.equal((await h.req('GET', '/v2/push/mine/blobs/uploads/not-a-uuid')).status, 404)
})

t.test('end-11: mount from another repository, 202 with a session when it is not there', async t => {
  const digest = await pushBlob(h, 'push/source', 'mountable')
  const m = await h.req('POST', `/v2/push/target/blobs/uploads/?mount=${digest}&from=push/source`)
  t.equal(m.status, 201)
  t.equal(m.headers.location, `/v2/push/target/blobs/${digest}`)
  t.equal(m.headers['docker-content-digest'], digest)
  t.equal((await h.req('GET', `/v2/push/target/blobs/${digest}`)).body.toString(), 'mountable')
  const missing = await h.req('POST', `/v2/push/target/blobs/uploads/?mount=${digestOf('absent')}&from=push/source`)
  t.equal(missing.status, 202)
  t.match(missing.headers.location, /^\/v2\/push\/target\/blobs\/uploads\//)
  t.equal((await h.req('GET', missing.headers.location)).status, 204, 'the session is real')
  const notThere = await h.req('POST', `/v2/push/target2/blobs/uploads/?mount=${digest}&from=push/elsewhere`)
  t.equal(notThere.status, 202, 'a blob the from repository does not link is not mounted')
})

t.test('end-7: manifest PUT answers 201 with Location and Docker-Content-Digest; by digest too', async t => {
  const img = await pushImage(h, 'push/img', 'v1')
  const byTag = await h.req('GET', '/v2/push/img/manifests/v1')
  t.equal(byTag.headers['docker-content-digest'], img.digest)
  const put = await h.req('PUT', `/v2/push/img/manifests/${img.digest}`, { body: img.body, headers: { 'content-type': OCI_MANIFEST } })
  t.equal(put.status, 201)
  t.equal(put.headers.location, `/v2/push/img/manifests/${img.digest}`)
  t.equal(put.headers['docker-content-digest'], img.digest)
  t.equal(put.headers['oci-subject'], undefined, 'no subject, no OCI-Subject')
  const retag = await h.req('PUT', '/v2/push/img/manifests/latest', { body: img.body, headers: { 'content-type': OCI_MANIFEST } })
  t.equal(retag.status, 201)
  t.equal((await h.req('GET', '/v2/push/img/manifests/latest')).headers['docker-content-digest'], img.digest)
})

t.test('a manifest without mediaType in the body takes the Content-Type', async t => {
  const config = await pushBlob(h, 'push/nomt', '{}')
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: 2 }, layers: [] }))
  const put = await h.req('PUT', '/v2/push/nomt/manifests/v1', { body, headers: { 'content-type': OCI_MANIFEST } })
  t.equal(put.status, 201)
  t.equal((await h.req('GET', '/v2/push/nomt/manifests/v1')).headers['content-type'], OCI_MANIFEST)
})

t.test('a 12 MiB blob streamed in and out, digest checked end to end', async t => {
  const hash = createHash('sha256')
  const chunk = Buffer.alloc(64 * 1024)
  const total = 12 * 1024 * 1024
  async function * body (): AsyncGenerator<Buffer> {
    for (let sent = 0, i = 0; sent < total; sent += chunk.length, i++) {
      chunk.fill(i % 251)
      hash.update(chunk)
      yield Buffer.from(chunk)
    }
  }
  const post = await h.req('POST', '/v2/push/big/blobs/uploads/')
  const patch = await h.req('PATCH', post.headers.location, { body: body() })
  t.equal(patch.headers.range, `0-${total - 1}`)
  const digest = `sha256:${hash.digest('hex')}`
  const put = await h.req('PUT', `${patch.headers.location}?digest=${digest}`)
  t.equal(put.status, 201)
  const get = await h.req('GET', `/v2/push/big/blobs/${digest}`)
  t.equal(get.body.length, total)
  t.equal(digestOf(get.body), digest)
})
