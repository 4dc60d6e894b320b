import t from 'tap'
import { assertName, isValidName, isValidTag, parseReference, isUploadId } from '../../../src/oci/names.js'
import { parseDigest } from '../../../src/oci/digest.js'

t.test('repository names: the spec grammar, any depth, at most 255 characters', async t => {
  for (const ok of ['a', 'library/alpine', 'a/b/c/d/e', 'a.b_c__d-e---f', 'x9/0y', `${'a'.repeat(255)}`]) t.ok(isValidName(ok), ok)
  for (const bad of ['', 'A', 'a/B', 'a/../b', '..', 'a/./b', 'a//b', '/a', 'a/', '-a', 'a-', 'a___b', 'a..b', '_a', 'a b', 'a%2fb', `${'a'.repeat(256)}`, 'a:b']) t.notOk(isValidName(bad), bad)
  t.throws(() => assertName('UP'), { code: 'NAME_INVALID', status: 400 })
})

t.test('digests: sha256 and sha512, lowercase hex of the right length', async t => {
  const d = parseDigest(`sha256:${'a'.repeat(64)}`)
  t.same(d, { algorithm: 'sha256', hex: 'a'.repeat(64), value: `sha256:${'a'.repeat(64)}` })
  t.equal(parseDigest(`sha512:${'0'.repeat(128)}`).algorithm, 'sha512')
  for (const bad of ['sha256:abc', `sha256:${'A'.repeat(64)}`, `sha512:${'a'.repeat(64)}`, `md5:${'a'.repeat(32)}`, `sha256+b64:${'a'.repeat(64)}`, 'sha256', ':abc', `sha256:${'a'.repeat(63)}/`, `../sha256:${'a'.repeat(64)}`]) {
    t.throws(() => parseDigest(bad), { code: 'DIGEST_INVALID', status: 400 }, bad)
  }
})

t.test('references: tags or digests', async t => {
  t.same(parseReference('v1.2_3-rc'), { kind: 'tag', tag: 'v1.2_3-rc' })
  t.equal(parseReference(`sha256:${'b'.repeat(64)}`).kind, 'digest')
  for (const ok of ['latest', '_x', 'A'.repeat(128)]) t.ok(isValidTag(ok), ok)
  for (const bad of ['', '-x', '.x', 'a/b', 'A'.repeat(129), '..']) t.notOk(isValidTag(bad), bad)
  t.throws(() => parseReference('../x'), { code: 'MANIFEST_INVALID' })
})

t.test('upload ids are UUIDs only', async t => {
  t.ok(isUploadId('0f8fad5b-d9cb-469f-a165-70867728950e'))
  t.notOk(isUploadId('../../etc'))
  t.notOk(isUploadId('0F8FAD5B-D9CB-469F-A165-70867728950E'))
})
