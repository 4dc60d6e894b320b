// Conformance, referrers (spec: end-12a, end-12b, and end-7's OCI-Subject): manifests with a
// subject are listed as descriptors of an image index, filterable by artifactType.
import t from 'tap'
import { startRegistry, pushBlob, pushImage, digestOf, OCI_MANIFEST, OCI_INDEX } from './fixtures/registry-harness.js'

const h = await startRegistry()
t.teardown(h.close)

const EMPTY = '{}'
const subject = await pushImage(h, 'refs/app', 'v1')
const emptyDigest = await pushBlob(h, 'refs/app', EMPTY)

async function pushArtifact (artifactType: string, label: string, subjectDigest = subject.digest): Promise<{ digest: string, body: Buffer, status: number, ociSubject?: string }> {
  const layer = await pushBlob(h, 'refs/app', `${artifactType} ${label}`)
  const body = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType,
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: emptyDigest, size: 2 },
    layers: [{ mediaType: 'application/octet-stream', digest: layer, size: Buffer.byteLength(`${artifactType} ${label}`) }],
    subject: { mediaType: OCI_MANIFEST, digest: subjectDigest, size: 123 },
    annotations: { 'org.example.label': label },
  }))
  const digest = digestOf(body)
  const r = await h.req('PUT', `/v2/refs/app/manifests/${digest}`, { body, headers: { 'content-type': OCI_MANIFEST } })
  return { digest, body, status: r.status, ociSubject: r.headers['oci-subject'] }
}

t.test('end-7: a manifest with a subject is answered with OCI-Subject', async t => {
  const sig = await pushArtifact('application/vnd.example.signature', 'sig')
  t.equal(sig.status, 201)
  t.equal(sig.ociSubject, subject.digest)
})

t.test('end-12a: referrers of a digest, as an image index of descriptors', async t => {
  const sbom = await pushArtifact('application/vnd.example.sbom', 'sbom')
  const r = await h.req('GET', `/v2/refs/app/referrers/${subject.digest}`)
  t.equal(r.status, 200)
  t.equal(r.headers['content-type'], OCI_INDEX)
  const index = r.json()
  t.equal(index.schemaVersion, 2)
  t.equal(index.mediaType, OCI_INDEX)
  t.equal(index.manifests.length, 2)
  const d = index.manifests.find((m: any) => m.digest === sbom.digest)
  t.same(d, { mediaType: OCI_MANIFEST, digest: sbom.digest, size: sbom.body.length, artifactType: 'application/vnd.example.sbom', annotations: { 'org.example.label': 'sbom' } })
  t.equal(r.headers['oci-filters-applied'], undefined)
})

t.test('end-12b: artifactType filter, with OCI-Filters-Applied', async t => {
  const r = await h.req('GET', `/v2/refs/app/referrers/${subject.digest}?artifactType=${encodeURIComponent('application/vnd.example.sbom')}`)
  t.equal(r.status, 200)
  t.equal(r.headers['oci-filters-applied'], 'artifactType')
  t.same(r.json().manifests.map((m: any) => m.artifactType), ['application/vnd.example.sbom'])
  const none = await h.req('GET', `/v2/refs/app/referrers/${subject.digest}?artifactType=application/none`)
  t.same(none.json().manifests, [])
})

t.test('a subject that does not exist yet is accepted (push in either order)', async t => {
  const ghost = digestOf('manifest pushed later')
  const a = await pushArtifact('application/vnd.example.signature', 'early', ghost)
  t.equal(a.status, 201)
  const r = await h.req('GET', `/v2/refs/app/referrers/${ghost}`)
  t.same(r.json().manifests.map((m: any) => m.digest), [a.digest])
})

t.test('end-12a: an unknown digest gives an empty index; a bad digest 400', async t => {
  const r = await h.req('GET', `/v2/refs/app/referrers/${digestOf('nobody refers to me')}`)
  t.equal(r.status, 200)
  t.same(r.json(), { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] })
  const bad = await h.req('GET', '/v2/refs/app/referrers/sha256:nothex')
  t.equal(bad.status, 400)
  t.equal(bad.json().errors[0].code, 'DIGEST_INVALID')
})

t.test('an image manifest without artifactType is listed with its config media type', async t => {
  const config = await pushBlob(h, 'refs/app', '{"k":1}')
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.example.config+json', digest: config, size: 7 }, layers: [], subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.body.length } }))
  await h.req('PUT', `/v2/refs/app/manifests/${digestOf(body)}`, { body, headers: { 'content-type': OCI_MANIFEST } })
  const r = await h.req('GET', `/v2/refs/app/referrers/${subject.digest}?artifactType=application/vnd.example.config%2Bjson`)
  t.same(r.json().manifests.map((m: any) => m.digest), [digestOf(body)])
})

t.test('a deleted referrer is no longer listed', async t => {
  const gone = await pushArtifact('application/vnd.example.temp', 'temp')
  t.equal((await h.req('DELETE', `/v2/refs/app/manifests/${gone.digest}`)).status, 202)
  const r = await h.req('GET', `/v2/refs/app/referrers/${subject.digest}`)
  t.notOk(r.json().manifests.some((m: any) => m.digest === gone.digest))
})
