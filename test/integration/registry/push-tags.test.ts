// Conformance, "Push" category, distribution-spec main branch (end-7, "Pushing Manifests"): a
// manifest PUT by digest with `tag` query parameters sets every tag and confirms each with an
// `OCI-Tag` header; a tag keeps the digest (and its algorithm) it was pushed with, so a sha512
// manifest pulled by tag answers `Docker-Content-Digest: sha512:…` on GET and HEAD.
import t from 'tap'
import { createHash } from 'node:crypto'
import { startRegistry, filesUnder, pushBlob, OCI_MANIFEST } from './fixtures/registry-harness.js'

const h = await startRegistry()
t.teardown(h.close)

async function manifestFor (name: string, salt: string): Promise<Buffer> {
  const config = await pushBlob(h, name, `{"salt":"${salt}"}`)
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: Buffer.byteLength(`{"salt":"${salt}"}`) }, layers: [] }))
}
const digest = (body: Buffer, algorithm: 'sha256' | 'sha512'): string => `${algorithm}:${createHash(algorithm).update(body).digest('hex')}`

t.test('end-7: PUT by digest with ?tag= sets every tag and answers one OCI-Tag per tag', async t => {
  const body = await manifestFor('tags/multi', 'multi')
  const d = digest(body, 'sha256')
  const put = await h.req('PUT', `/v2/tags/multi/manifests/${d}?tag=v3&tag=v3.1&tag=latest&tag=v3`, { body, headers: { 'content-type': OCI_MANIFEST } })
  t.equal(put.status, 201)
  t.equal(put.headers['docker-content-digest'], d)
  t.same(put.headers['oci-tag'].split(/,\s*/), ['v3', 'v3.1', 'latest'], 'each tag once, in the order asked')
  t.same((await h.req('GET', '/v2/tags/multi/tags/list')).json().tags, ['latest', 'v3', 'v3.1'])
  for (const tag of ['v3', 'v3.1', 'latest']) {
    const r = await h.req('GET', `/v2/tags/multi/manifests/${tag}`)
    t.equal(r.status, 200, tag)
    t.equal(r.headers['docker-content-digest'], d, tag)
    t.ok(r.body.equals(body), `${tag}: the bytes pushed`)
  }
  const plain = await h.req('PUT', `/v2/tags/multi/manifests/${d}`, { body, headers: { 'content-type': OCI_MANIFEST } })
  t.equal(plain.status, 201)
  t.equal(plain.headers['oci-tag'], undefined, 'no tag asked, no OCI-Tag')
})

t.test('a tag keeps the digest algorithm it was pushed with (sha512)', async t => {
  const body = await manifestFor('tags/sha512', 'sha512')
  const d512 = digest(body, 'sha512')
  const put = await h.req('PUT', `/v2/tags/sha512/manifests/${d512}?tag=v1`, { body, headers: { 'content-type': OCI_MANIFEST } })
  t.equal(put.status, 201)
  t.equal(put.headers['docker-content-digest'], d512)
  t.equal(put.headers['oci-tag'], 'v1')
  for (const method of ['GET', 'HEAD']) {
    const r = await h.req(method, '/v2/tags/sha512/manifests/v1')
    t.equal(r.status, 200, method)
    t.equal(r.headers['docker-content-digest'], d512, `${method} by tag: the sha512 digest, not a sha256 re-hash`)
    t.equal(r.headers.etag, `"${d512}"`)
  }
  t.equal((await h.req('GET', `/v2/tags/sha512/manifests/${d512}`)).status, 200, 'by its sha512 digest')
  t.equal((await h.req('GET', `/v2/tags/sha512/manifests/${digest(body, 'sha256')}`)).status, 404, 'never stored under sha256')
  const retag = await h.req('PUT', '/v2/tags/sha512/manifests/v2', { body, headers: { 'content-type': OCI_MANIFEST } })
  t.equal(retag.headers['docker-content-digest'], digest(body, 'sha256'), 'a push by tag is hashed with sha256, as before')
  t.equal((await h.req('HEAD', '/v2/tags/sha512/manifests/v1')).headers['docker-content-digest'], d512, 'v1 still sha512')
})

t.test('bad tags: 400 MANIFEST_INVALID and nothing written', async t => {
  const body = await manifestFor('tags/bad', 'bad')
  const d = digest(body, 'sha256')
  const before = await filesUnder(h.dir)
  for (const [query, why] of [['?tag=ok&tag=-bad', 'one bad tag among good ones'], ['?tag=' + 'a'.repeat(129), 'too long'], ['?tag=a%2Fb', 'a slash'], ['?tag=', 'empty']]) {
    const r = await h.req('PUT', `/v2/tags/bad/manifests/${d}${query}`, { body, headers: { 'content-type': OCI_MANIFEST } })
    t.equal(r.status, 400, why)
    t.equal(r.json().errors[0].code, 'MANIFEST_INVALID', why)
  }
  const byTag = await h.req('PUT', '/v2/tags/bad/manifests/v1?tag=v2', { body, headers: { 'content-type': OCI_MANIFEST } })
  t.equal(byTag.status, 400, 'tag parameters with a push by tag')
  t.match(byTag.json().errors[0].message, /push by digest/)
  t.same(await filesUnder(h.dir), before, 'no manifest, no tag')
  t.equal((await h.req('GET', '/v2/tags/bad/manifests/ok')).status, 404)
})
