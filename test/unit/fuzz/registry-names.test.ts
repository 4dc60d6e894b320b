/**
 * Properties of the URL grammar (src/oci/names.ts, src/oci/digest.ts) over generated input: every string is
 * either accepted in a form that is safe to put in a path, or refused with the spec's error code —
 * never another exception.
 */
import t from 'tap'
import fc from 'fast-check'
import { OciError } from '../../../src/errors.js'
import { assertName, isValidName, isValidTag, parseReference, isUploadId, NAME_MAX_LENGTH } from '../../../src/oci/names.js'
import { parseDigest, DIGEST_ALGORITHMS } from '../../../src/oci/digest.js'
import { FUZZ_SEED, FUZZ_RUNS, check, hostile, validName, validDigest, digestLike, validTag } from './fuzz-settings.js'

t.comment(`fuzz seed ${FUZZ_SEED}, ${FUZZ_RUNS} runs per property (FUZZ_SEED=… to replay)`)

const refusedWith = (fn: () => unknown, code: string): boolean => {
  try { fn(); return false } catch (err) { return err instanceof OciError && err.code === code && err.status === 400 }
}

t.test('names from the grammar are accepted up to 255 characters, refused past it', async t => {
  check(t, 'grammar names accepted iff ≤ 255', fc.property(validName, name => {
    if (name.length <= NAME_MAX_LENGTH) return isValidName(name) && assertName(name) === name
    return !isValidName(name) && refusedWith(() => assertName(name), 'NAME_INVALID')
  }))
})

t.test('any string: an accepted name has no empty, dot or dot-dot component and no separator but /', async t => {
  check(t, 'accepted names are path-safe', fc.property(fc.oneof(hostile, validName), name => {
    if (!isValidName(name)) return refusedWith(() => assertName(name), 'NAME_INVALID')
    const parts = name.split('/')
    return parts.every(p => p !== '' && p !== '.' && p !== '..' && !p.startsWith('_') && /^[a-z0-9._-]+$/.test(p))
  }))
})

t.test('digests: accepted only as a registered algorithm with its exact lowercase-hex length', async t => {
  check(t, 'digest-like strings: accepted iff canonical', fc.property(digestLike, value => {
    let d
    try { d = parseDigest(value) } catch (err) { return err instanceof OciError && err.code === 'DIGEST_INVALID' }
    return d.value === value && `${d.algorithm}:${d.hex}` === value && d.hex.length === DIGEST_ALGORITHMS[d.algorithm] && /^[a-f0-9]+$/.test(d.hex)
  }))
  check(t, 'valid digests accepted', fc.property(validDigest, value => parseDigest(value).value === value))
})

t.test('references: a tag (no colon, spec grammar) or a digest; anything else is refused by code', async t => {
  check(t, 'references: tag or digest or refused by code', fc.property(fc.oneof(digestLike, validTag, hostile), ref => {
    let r
    try { r = parseReference(ref) } catch (err) { return err instanceof OciError && (err.code === 'MANIFEST_INVALID' || err.code === 'DIGEST_INVALID') }
    if (r.kind === 'digest') return r.digest.value === ref
    return r.tag === ref && isValidTag(ref) && !ref.includes('/') && !ref.startsWith('.') && ref.length <= 128
  }))
  check(t, 'valid tags accepted', fc.property(validTag, tag => parseReference(tag).kind === 'tag'))
})

t.test('upload ids: only lowercase v4-shaped UUIDs; random UUIDs always pass', async t => {
  check(t, 'upload ids never accept other shapes', fc.property(fc.oneof(hostile, fc.uuid().map(u => u.toUpperCase())), id => !isUploadId(id) || /^[0-9a-f-]{36}$/.test(id)))
  check(t, 'random UUIDs accepted', fc.property(fc.constant(null), () => isUploadId(crypto.randomUUID())), 50)
})

// Megabyte inputs with a near-miss at the end: a backtracking regex would hang here (and tap's
// timeout would fail the file); the grammar's regexes are unambiguous, so these return at once.
t.test('absurd lengths are refused', async t => {
  t.notOk(isValidName('a-'.repeat(200_000) + '!'))
  t.notOk(isValidName('a'.repeat(NAME_MAX_LENGTH + 1)))
  t.throws(() => parseDigest(`sha256:${'a'.repeat(1_000_000)}`), { code: 'DIGEST_INVALID' })
  t.throws(() => parseDigest(`${'a.'.repeat(200_000)}:`), { code: 'DIGEST_INVALID' })
  t.throws(() => parseReference('a'.repeat(1_000_000)), { code: 'MANIFEST_INVALID' })
})
