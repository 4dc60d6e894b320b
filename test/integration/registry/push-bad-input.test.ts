// Conformance, "Push" category, the refusals: each bad request gets the spec's status and error
// code, and leaves the storage directory exactly as it was (same files, same sizes).
import t from 'tap'
import type { Test } from 'tap'
import { startRegistry, rawRequest, filesUnder, pushBlob, digestOf, OCI_MANIFEST, DOCKER_MANIFEST } from './fixtures/registry-harness.js'

const h = await startRegistry()
t.teardown(h.close)

async function refuses (t: Test, what: string, send: () => Promise<{ status: number, json: () => any }>, status: number, code: string): Promise<void> {
  const before = await filesUnder(h.dir)
  const r = await send()
  t.equal(r.status, status, `${what}: status`)
  t.equal(r.json().errors[0].code, code, `${what}: code`)
  t.same(await filesUnder(h.dir), before, `${what}: wrote nothing`)
}

const data = Buffer.from('bad input blob')
const digest = digestOf(data)

t.test('invalid repository names', async t => {
  // (`x/a..b`: a first component with a dot names an upstream host on the registry port.)
  for (const name of ['Upper/case', 'a//b', '-a', 'a-', 'x/a..b', `${'a'.repeat(250)}/bcdef`, '_x']) {
    await refuses(t, `POST ${name}`, async () => await h.req('POST', `/v2/${name}/blobs/uploads/?digest=${digest}`, { body: data }), 400, 'NAME_INVALID')
  }
  const before = await filesUnder(h.dir)
  const raw = await rawRequest(h, 'POST', `/v2/a/../b/blobs/uploads/?digest=${digest}`)
  t.equal(raw.status, 400, 'a/../b sent verbatim')
  t.equal(JSON.parse(raw.body).errors[0].code, 'NAME_INVALID')
  t.same(await filesUnder(h.dir), before)
  await refuses(t, 'mount from an invalid name', async () => await h.req('POST', `/v2/ok/blobs/uploads/?mount=${digest}&from=Bad`), 400, 'NAME_INVALID')
})

t.test('invalid digests and algorithms', async t => {
  for (const d of ['sha256:abc', 'md5:d41d8cd98f00b204e9800998ecf8427e', `sha256:${'G'.repeat(64)}`, 'nocolon', `sha256:${'a'.repeat(128)}`]) {
    await refuses(t, `POST ?digest=${d}`, async () => await h.req('POST', `/v2/bad/digests/blobs/uploads/?digest=${d}`, { body: data }), 400, 'DIGEST_INVALID')
  }
})

t.test('digest mismatch on upload: monolithic POST, PUT of a session', async t => {
  await refuses(t, 'POST mismatch', async () => await h.req('POST', `/v2/bad/mismatch/blobs/uploads/?digest=${digestOf('other')}`, { body: data }), 400, 'DIGEST_INVALID')
  const before = await filesUnder(h.dir)
  const post = await h.req('POST', '/v2/bad/mismatch/blobs/uploads/')
  const r = await h.req('PUT', `${post.headers.location}?digest=${digestOf('other')}`, { body: data })
  t.equal(r.status, 400)
  t.equal(r.json().errors[0].code, 'DIGEST_INVALID')
  t.same(await filesUnder(h.dir), before, 'no blob, no session left')
  t.equal((await h.req('HEAD', `/v2/bad/mismatch/blobs/${digestOf('other')}`)).status, 404)
  t.equal((await h.req('HEAD', `/v2/bad/mismatch/blobs/${digest}`)).status, 404)
})

t.test('PUT without a digest, wrong and missing Content-Range', async t => {
  const post = await h.req('POST', '/v2/bad/range/blobs/uploads/')
  const loc = post.headers.location
  await refuses(t, 'PUT without ?digest', async () => await h.req('PUT', loc, { body: data }), 400, 'DIGEST_INVALID')
  await h.req('PATCH', loc, { body: 'abcde', headers: { 'content-range': '0-4' } })
  await refuses(t, 'malformed Content-Range', async () => await h.req('PATCH', loc, { body: 'fgh', headers: { 'content-range': 'five-seven' } }), 400, 'BLOB_UPLOAD_INVALID')
  await refuses(t, 'Content-Range and Content-Length disagree', async () => await h.req('PATCH', loc, { body: 'fgh', headers: { 'content-range': '5-9' } }), 400, 'SIZE_INVALID')
  await refuses(t, 'out of order', async () => await h.req('PATCH', loc, { body: 'fgh', headers: { 'content-range': '6-8' } }), 416, 'RANGE_INVALID')
  await refuses(t, 'missing Content-Range on a later chunk', async () => await h.req('PATCH', loc, { body: 'fgh' }), 400, 'BLOB_UPLOAD_INVALID')
  t.equal((await h.req('GET', loc)).headers.range, '0-4', 'the session is where it was')
})

t.test('unknown sessions', async t => {
  await refuses(t, 'PATCH unknown', async () => await h.req('PATCH', '/v2/bad/s/blobs/uploads/00000000-0000-4000-8000-000000000000', { body: 'x' }), 404, 'BLOB_UPLOAD_UNKNOWN')
  await refuses(t, 'PUT traversal-ish id', async () => await h.req('PUT', `/v2/bad/s/blobs/uploads/..%2F..%2Fblobs?digest=${digest}`, { body: 'x' }), 404, 'BLOB_UPLOAD_UNKNOWN')
})

t.test('manifests: malformed, oversized, mismatched, referencing missing blobs', async t => {
  const config = await pushBlob(h, 'bad/manifest', '{}')
  const manifest = (extra: Record<string, unknown> = {}): Buffer => Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: 2 },
    layers: [],
    ...extra,
  }))
  const put = (body: Buffer, ref = 'v1', contentType = OCI_MANIFEST) => async () => await h.req('PUT', `/v2/bad/manifest/manifests/${ref}`, { body, headers: { 'content-type': contentType } })
  await refuses(t, 'malformed JSON', put(Buffer.from('{"schemaVersion": 2,')), 400, 'MANIFEST_INVALID')
  await refuses(t, 'schema 1', put(Buffer.from('{"schemaVersion": 1}')), 400, 'MANIFEST_INVALID')
  await refuses(t, 'oversized', put(Buffer.concat([manifest(), Buffer.alloc(4 * 1024 * 1024, 32)])), 413, 'MANIFEST_INVALID')
  await refuses(t, 'media type differs from Content-Type', put(manifest(), 'v1', DOCKER_MANIFEST), 400, 'MANIFEST_INVALID')
  await refuses(t, 'unsupported media type', put(manifest({ mediaType: 'text/plain' }), 'v1', 'text/plain'), 400, 'MANIFEST_INVALID')
  await refuses(t, 'layer missing', put(manifest({ layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: digestOf('nope'), size: 4 }] })), 404, 'MANIFEST_BLOB_UNKNOWN')
  await refuses(t, 'config missing', put(manifest({ config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf('nope'), size: 4 } })), 404, 'MANIFEST_BLOB_UNKNOWN')
  const elsewhere = await pushBlob(h, 'bad/elsewhere', 'elsewhere')
  await refuses(t, 'blob in another repository only', put(manifest({ layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: elsewhere, size: 9 }] })), 404, 'MANIFEST_BLOB_UNKNOWN')
  await refuses(t, 'index entry missing', put(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ mediaType: OCI_MANIFEST, digest: digestOf('no manifest'), size: 10 }] })), 'idx', 'application/vnd.oci.image.index.v1+json'), 404, 'MANIFEST_BLOB_UNKNOWN')
  await refuses(t, 'bad descriptor digest', put(manifest({ layers: [{ mediaType: 'x', digest: 'sha256:zz', size: 1 }] })), 400, 'MANIFEST_INVALID')
  await refuses(t, 'digest reference does not match the body', put(manifest(), digestOf('something else')), 400, 'DIGEST_INVALID')
  await refuses(t, 'invalid tag', put(manifest(), '-bad-tag'), 400, 'MANIFEST_INVALID')
})

t.test('unknown endpoints and methods', async t => {
  const r = await h.req('PATCH', '/v2/x/manifests/v1')
  t.equal(r.status, 405)
  t.equal(r.json().errors[0].code, 'UNSUPPORTED')
  t.equal((await h.req('GET', '/v2/x/unknown/thing')).status, 404)
})
