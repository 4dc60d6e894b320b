import t from 'tap'
import { join } from 'node:path'
import { StoragePaths } from '../../../src/registry/storage/paths.js'
import { OciError } from '../../../src/errors.js'
import { parseDigest } from '../../../src/oci/digest.js'

const root = '/srv/registry'
const p = new StoragePaths(root)
const hex = 'ab'.repeat(32)
const digest = parseDigest(`sha256:${hex}`)

t.test('the layout drawn in paths.ts', async t => {
  t.equal(p.blob(digest), join(root, 'blobs/sha256/ab', hex))
  t.equal(p.blob(parseDigest(`sha512:${'cd'.repeat(64)}`)), join(root, 'blobs/sha512/cd', 'cd'.repeat(64)))
  t.equal(p.layerLink('a/b/c', digest), join(root, 'repositories/a/b/c/_layers/sha256', hex))
  t.equal(p.revisionLink('lib/app', digest), join(root, 'repositories/lib/app/_manifests/revisions/sha256', hex))
  t.equal(p.tagLink('lib/app', 'v1.0'), join(root, 'repositories/lib/app/_manifests/tags/v1.0'))
  t.equal(p.referrerLink('lib/app', digest, parseDigest(`sha512:${'ef'.repeat(64)}`)), join(root, 'repositories/lib/app/_referrers/sha256', hex, `sha512-${'ef'.repeat(64)}`))
  t.equal(p.uploadData('0f8fad5b-d9cb-469f-a165-70867728950e'), join(root, 'uploads/0f8fad5b-d9cb-469f-a165-70867728950e/data'))
  t.ok(p.tmpFile().startsWith(join(root, 'tmp') + '/'))
  t.not(p.tmpFile(), p.tmpFile(), 'tmp names are unique')
})

// A digest reaches a builder only as a `Digest`, which parseDigest makes: the hostile strings
// below are refused there, before any path exists.
t.test('no input can leave the root', async t => {
  const refused = OciError
  t.throws(() => p.repository('../etc'), refused)
  t.throws(() => p.repository('a/../../etc'), refused)
  t.throws(() => p.repository('/etc'), refused)
  t.throws(() => p.blob(parseDigest('sha256:../../../etc/passwd')), refused)
  t.throws(() => p.layerLink('ok', parseDigest(`sha256:${hex}/..`)), refused)
  t.throws(() => p.tagLink('ok', '../../../x'), refused)
  t.throws(() => p.tagLink('ok', 'a/b'), refused)
  t.throws(() => p.upload('../uploads'), refused)
  t.throws(() => p.referrersDir('ok', parseDigest('sha1:abc')), refused)
})
