import t from 'tap'
import { parseManifest } from '../../../src/registry/manifest-validation.js'
import { MEDIA_TYPES } from '../../../src/oci/media-types.js'

const d = (c: string, mediaType = 'application/octet-stream') => ({ mediaType, digest: `sha256:${c.repeat(64)}`, size: 1 })
const body = (o: unknown): Buffer => Buffer.from(JSON.stringify(o))
const invalid = { code: 'MANIFEST_INVALID', status: 400 }

t.test('image manifests: config and layers are the blobs to check; foreign layers are not', async t => {
  const foreign = { ...d('f', 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip'), urls: ['https://example.invalid/x'] }
  const m = parseManifest(body({ schemaVersion: 2, mediaType: MEDIA_TYPES.dockerManifest, config: d('a'), layers: [d('b'), foreign] }), MEDIA_TYPES.dockerManifest)
  t.equal(m.mediaType, MEDIA_TYPES.dockerManifest)
  t.same(m.blobs.map(x => x.digest[7]), ['a', 'b'])
  t.same(m.manifests, [])
})

t.test('indexes: entries are the manifests to check', async t => {
  const m = parseManifest(body({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [d('c', MEDIA_TYPES.ociManifest)], artifactType: 'x/y' }), undefined)
  t.equal(m.mediaType, MEDIA_TYPES.ociIndex)
  t.equal(m.manifests.length, 1)
  t.equal(m.artifactType, 'x/y')
})

t.test('media type: body, else Content-Type; they must agree', async t => {
  t.equal(parseManifest(body({ schemaVersion: 2, config: d('a'), layers: [] }), `${MEDIA_TYPES.ociManifest}; charset=utf-8`).mediaType, MEDIA_TYPES.ociManifest)
  t.throws(() => parseManifest(body({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: d('a'), layers: [] }), MEDIA_TYPES.dockerManifest), invalid)
  t.throws(() => parseManifest(body({ schemaVersion: 2, mediaType: 'text/plain', config: d('a'), layers: [] }), undefined), invalid)
})

t.test('subject and artifactType for the referrers API', async t => {
  const m = parseManifest(body({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: d('a', 'application/vnd.example+json'), layers: [], subject: d('e', MEDIA_TYPES.ociManifest), annotations: { k: 'v' } }), undefined)
  t.equal(m.subject?.digest, `sha256:${'e'.repeat(64)}`)
  t.equal(m.artifactType, 'application/vnd.example+json', 'falls back to config.mediaType')
  t.same(m.annotations, { k: 'v' })
})

t.test('malformed manifests', async t => {
  for (const [what, raw] of [
    ['not JSON', Buffer.from('{')],
    ['array', body([])],
    ['schema 1', body({ schemaVersion: 1 })],
    ['no config', body({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, layers: [] })],
    ['layers not an array', body({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: d('a'), layers: {} })],
    ['bad digest', body({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: { ...d('a'), digest: 'sha256:xyz' }, layers: [] })],
    ['negative size', body({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: { ...d('a'), size: -1 }, layers: [] })],
    ['index with layers', body({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [], layers: [] })],
    ['annotations not strings', body({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [], annotations: { a: 1 } })],
  ] as Array<[string, Buffer]>) {
    t.throws(() => parseManifest(raw, undefined), invalid, what)
  }
})
