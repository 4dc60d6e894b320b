/**
 * Path-traversal properties of the hosted registry's path builder (src/registry/storage/paths.ts):
 * for generated names, digests, tags, upload ids and labels — most of them hostile (`..`, encoded
 * separators, NUL, absolute paths) — every builder either refuses or returns a path inside its
 * subtree of the root. Digests reach the builders only parsed (`Digest`), so a digest here goes
 * through parseDigest first, as it does in a request. Pure: nothing touches the disk (the HTTP fuzz
 * checks the disk).
 */
import t from 'tap'
import { join, relative, isAbsolute, sep } from 'node:path'
import fc from 'fast-check'
import { StoragePaths } from '../../../src/registry/storage/paths.js'
import { parseDigest } from '../../../src/oci/digest.js'
import { FUZZ_SEED, FUZZ_RUNS, check, hostile, validName, digestLike, validDigest, validTag } from './fuzz-settings.js'

t.comment(`fuzz seed ${FUZZ_SEED}, ${FUZZ_RUNS} runs per property (FUZZ_SEED=… to replay)`)

const root = '/srv/crossdock/registry'
const paths = new StoragePaths(root)

/** Whether `p` is strictly inside `dir`, with no `..` or empty segment on the way. */
function inside (dir: string, p: string): boolean {
  const rel = relative(dir, p)
  return rel !== '' && !isAbsolute(rel) && rel.split(sep).every(s => s !== '..' && s !== '.' && s !== '') && join(dir, rel) === p
}

/** Runs a builder: refused (any throw) is fine; a path must be inside `dir`. */
function contained (dir: string, build: () => string): boolean {
  let p: string
  try { p = build() } catch { return true }
  return inside(dir, p) && !p.includes('\0')
}

const name = fc.oneof(hostile, validName)
const digest = fc.oneof(digestLike, hostile)
const tag = fc.oneof(hostile, validTag)
const uploadId = fc.oneof(hostile, fc.uuid())

t.test('every builder refuses or stays in its subtree', async t => {
  check(t, 'blob', fc.property(digest, d => contained(join(root, 'blobs'), () => paths.blob(parseDigest(d)))))
  check(t, 'blobAlgorithmDir', fc.property(hostile, a => contained(join(root, 'blobs'), () => paths.blobAlgorithmDir(a))))
  check(t, 'repository', fc.property(name, n => contained(join(root, 'repositories'), () => paths.repository(n))))
  check(t, 'layerLink', fc.property(name, digest, (n, d) => contained(join(root, 'repositories'), () => paths.layerLink(n, parseDigest(d)))))
  check(t, 'revisionLink', fc.property(name, digest, (n, d) => contained(join(root, 'repositories'), () => paths.revisionLink(n, parseDigest(d)))))
  check(t, 'tagLink', fc.property(name, tag, (n, tg) => contained(join(root, 'repositories'), () => paths.tagLink(n, tg))))
  check(t, 'referrerLink', fc.property(name, digest, digest, (n, s, r) => contained(join(root, 'repositories'), () => paths.referrerLink(n, parseDigest(s), parseDigest(r)))))
  check(t, 'upload', fc.property(uploadId, id => contained(join(root, 'uploads'), () => paths.uploadData(id)) && contained(join(root, 'uploads'), () => paths.uploadInfo(id))))
  check(t, 'tmpFile', fc.property(hostile, label => contained(join(root, 'tmp'), () => paths.tmpFile(label))))
})

t.test('a repository\'s files stay in that repository\'s own directory', async t => {
  // `_layers`-style names cannot be a component, so no name reaches another name's files.
  check(t, 'links under repository(name)', fc.property(validName.filter(n => n.length <= 255), validDigest, validTag, (n, d, tg) => {
    const repo = paths.repository(n)
    const digest = parseDigest(d)
    return [paths.layerLink(n, digest), paths.revisionLink(n, digest), paths.tagLink(n, tg), paths.referrerLink(n, digest, digest)].every(p => inside(repo, p)) &&
      inside(join(root, 'repositories'), repo) && relative(join(root, 'repositories'), repo).split(sep).join('/') === n
  }))
})

t.test('the traversals people try are refused outright', async t => {
  const tries = ['..', '../x', 'a/../../b', '/etc', 'a/%2e%2e/b', 'a\\..\\b', 'a/\0/b', '..%2f..%2fetc', 'a/_layers', '%2e%2e']
  for (const x of tries) {
    t.throws(() => paths.repository(x), `repository ${JSON.stringify(x)}`)
    t.throws(() => paths.tagLink('ok', x), `tag ${JSON.stringify(x)}`)
    t.throws(() => paths.blob(parseDigest(`sha256:${x}`)), `digest sha256:${JSON.stringify(x)}`)
    t.throws(() => paths.upload(x), `upload ${JSON.stringify(x)}`)
    t.throws(() => paths.tmpFile(x), `tmp label ${JSON.stringify(x)}`)
  }
})
