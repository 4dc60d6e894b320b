/**
 * Properties of manifest validation (src/registry/manifest-validation.ts) over generated bodies:
 * random JSON, manifests with fields of the wrong type, deep nesting and huge arrays. Whatever the
 * body, parseManifest returns a manifest whose every descriptor is usable (valid digest, safe size)
 * or throws MANIFEST_INVALID — never a TypeError or a stack overflow that would become a 500.
 */
import t from 'tap'
import fc from 'fast-check'
import { OciError } from '../../../src/errors.js'
import { parseManifest, MANIFEST_MAX_BYTES, type ParsedManifest } from '../../../src/registry/manifest-validation.js'
import { MEDIA_TYPES } from '../../../src/oci/media-types.js'
import { parseDigest } from '../../../src/oci/digest.js'
import { FUZZ_SEED, FUZZ_RUNS, check, validDigest, digestLike } from './fuzz-settings.js'

t.comment(`fuzz seed ${FUZZ_SEED}, ${FUZZ_RUNS} runs per property (FUZZ_SEED=… to replay)`)

const KNOWN = new Set<string>(Object.values(MEDIA_TYPES))

/** True when `body` was parsed into a manifest we can store, or refused with MANIFEST_INVALID. */
function outcomeIsSound (body: Buffer, contentType: string | undefined): boolean {
  let m: ParsedManifest
  try {
    m = parseManifest(body, contentType)
  } catch (err) {
    return err instanceof OciError && err.code === 'MANIFEST_INVALID' && err.status === 400
  }
  const descriptors = [...m.blobs, ...m.manifests, ...(m.subject !== undefined ? [m.subject] : [])]
  return KNOWN.has(m.mediaType) && descriptors.every(d =>
    typeof d.mediaType === 'string' && Number.isSafeInteger(d.size) && d.size >= 0 && parseDigest(d.digest).value === d.digest)
}

// Values of every JSON type, to put where a field of another type is expected.
const anyJson = fc.oneof(fc.constant(null), fc.boolean(), fc.integer(), fc.double(), fc.string({ maxLength: 10 }), fc.constant([]), fc.constant({}), fc.jsonValue({ maxDepth: 2 }))
const mediaType = fc.oneof(fc.constantFrom(...KNOWN, 'application/vnd.oci.image.config.v1+json', 'text/plain', ''), anyJson)
const descriptor = fc.record({
  mediaType,
  digest: fc.oneof(validDigest, digestLike, anyJson),
  size: fc.oneof(fc.nat(), fc.constantFrom(-1, 1.5, 2 ** 53, Number.MAX_SAFE_INTEGER), anyJson),
  urls: fc.oneof(fc.constant(undefined), fc.array(fc.webUrl(), { maxLength: 2 }), anyJson),
}, { requiredKeys: [] })
const manifestObject = fc.record({
  schemaVersion: fc.oneof(fc.constant(2), anyJson),
  mediaType,
  artifactType: fc.oneof(fc.constant('application/x-test'), anyJson),
  config: fc.oneof(descriptor, anyJson),
  layers: fc.oneof(fc.array(fc.oneof(descriptor, anyJson), { maxLength: 5 }), anyJson),
  manifests: fc.oneof(fc.array(fc.oneof(descriptor, anyJson), { maxLength: 5 }), anyJson),
  subject: fc.oneof(descriptor, anyJson),
  annotations: fc.oneof(fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), anyJson, { maxKeys: 3 }), anyJson),
}, { requiredKeys: [] })
const contentType = fc.oneof(fc.constant(undefined), mediaType.filter((x): x is string => typeof x === 'string'), fc.string({ maxLength: 30 }))

t.test('structured manifests with fields of any type', async t => {
  check(t, 'parsed soundly or MANIFEST_INVALID', fc.property(manifestObject, contentType, (m, ct) => outcomeIsSound(Buffer.from(JSON.stringify(m)), ct)))
})

t.test('arbitrary JSON and arbitrary bytes', async t => {
  check(t, 'random JSON documents', fc.property(fc.jsonValue({ maxDepth: 6 }), contentType, (v, ct) => outcomeIsSound(Buffer.from(JSON.stringify(v) ?? 'null'), ct)))
  check(t, 'random bytes', fc.property(fc.uint8Array({ maxLength: 200 }), contentType, (bytes, ct) => outcomeIsSound(Buffer.from(bytes), ct)))
})

t.test('deep nesting and huge arrays within the 4 MiB limit', async t => {
  // The deepest document that fits the size limit: JSON.parse must not overflow the stack.
  const depth = MANIFEST_MAX_BYTES / 2
  const deepArray = Buffer.from('['.repeat(depth) + ']'.repeat(depth))
  t.throws(() => parseManifest(deepArray, undefined), { code: 'MANIFEST_INVALID' }, 'nested arrays')
  const deepField = Buffer.from(`{"schemaVersion":2,"config":${'{"a":'.repeat(400_000)}1${'}'.repeat(400_000)},"layers":[]}`)
  t.ok(deepField.length < MANIFEST_MAX_BYTES)
  t.throws(() => parseManifest(deepField, undefined), { code: 'MANIFEST_INVALID' }, 'nested objects where a descriptor belongs')
  const deepAnnotation = Buffer.from(`{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:${'a'.repeat(64)}","size":1},"layers":[],"annotations":{"x":${'['.repeat(300_000)}${']'.repeat(300_000)}}}`)
  t.throws(() => parseManifest(deepAnnotation, undefined), { code: 'MANIFEST_INVALID' }, 'nested arrays in annotations')

  const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${'b'.repeat(64)}`, size: 1 }
  const many = { schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: { ...layer, mediaType: 'application/vnd.oci.image.config.v1+json' }, layers: Array(25_000).fill(layer) }
  const big = Buffer.from(JSON.stringify(many))
  t.ok(big.length < MANIFEST_MAX_BYTES)
  t.equal(parseManifest(big, MEDIA_TYPES.ociManifest).blobs.length, 25_001, 'a 25,000-layer manifest is accepted as is')
  const bad = { ...many, layers: [...many.layers.slice(0, 24_999), { ...layer, size: '1' }] }
  t.throws(() => parseManifest(Buffer.from(JSON.stringify(bad)), undefined), { code: 'MANIFEST_INVALID', message: /layers\[24999\]\.size/ }, 'one bad entry at the end of a huge array is found')
})

t.test('a prototype-polluting body changes nothing outside the manifest', async t => {
  const body = Buffer.from(`{"schemaVersion":2,"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}},"config":{"mediaType":"a","digest":"sha256:${'a'.repeat(64)}","size":1},"layers":[],"annotations":{"__proto__":"x"}}`)
  parseManifest(body, undefined)
  t.equal(({} as any).polluted, undefined)
})
