import t from 'tap'
import cacache from 'cacache'
import { createHash } from 'node:crypto'
import { contentPath, integrityOf } from '../../../src/cache/cache-paths.js'
import { tempDir, store, blob, collect } from './helpers.js'
import { Readable } from 'node:stream'
import { parseDigest, tryParseDigest } from '../../../src/oci/digest.js'

t.test('the digests a cache path is built from: sha256 and sha512, nothing that could escape a path', async t => {
  t.ok(tryParseDigest(`sha256:${'a'.repeat(64)}`))
  t.ok(tryParseDigest(`sha512:${'b'.repeat(128)}`))
  for (const bad of [`sha256:${'A'.repeat(64)}`, `sha256:${'a'.repeat(63)}`, `sha384:${'a'.repeat(96)}`, 'sha256:../../etc/passwd', `md5:${'a'.repeat(32)}`, '']) {
    t.equal(tryParseDigest(bad), undefined, bad)
    t.throws(() => parseDigest(bad), { code: 'DIGEST_INVALID' }, `${bad}: the throwing parser agrees`)
  }
})

// If a cacache upgrade moves its content layout, our zero-copy commit would write where cacache
// never looks: this pins our path to cacache's own answer.
t.test('contentPath is where cacache keeps content (sha256 and sha512)', async t => {
  const dir = await tempDir(t)
  for (const algo of ['sha256', 'sha512'] as const) {
    const data = Buffer.from(`pinned ${algo}`)
    const hex = createHash(algo).update(data).digest('hex')
    const d = parseDigest(`${algo}:${hex}`)!
    const integrity = await cacache.put(dir, `k-${algo}`, data, { algorithms: [algo] })
    t.equal(String(integrity), integrityOf(d), `${algo} integrity spelling`)
    const info = await cacache.get.info(dir, `k-${algo}`)
    t.equal(info?.path, contentPath(dir, d), `${algo} content path`)
  }
})

t.test('a committed blob is a normal cacache entry: get.info path, get verifies integrity', async t => {
  const dir = await tempDir(t)
  const s = await store(t, dir)
  const b = blob(100_000)
  const r = s.blobs.beginFill(parseDigest(b.digest), Readable.from([b.data]), { expectedSize: b.data.length, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' })
  if (!('fill' in r)) throw new Error('expected a fill')
  await r.fill.done
  const info = await cacache.get.info(dir, `blob:${b.digest}`)
  t.equal(info?.path, contentPath(dir, parseDigest(b.digest)!))
  t.equal(info?.size, b.data.length)
  t.same(info?.metadata, { digest: b.digest, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' })
  const got = await cacache.get(dir, `blob:${b.digest}`, { memoize: false })
  t.ok(got.data.equals(b.data), 'cacache reads (and re-verifies) what we renamed in')
  const opened = await s.blobs.open(parseDigest(b.digest))
  t.ok(opened)
  t.ok((await collect(opened!.fh.createReadStream())).equals(b.data))
})
