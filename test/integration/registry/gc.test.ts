// `crossdock gc` (runGc) against a live registry's storage: referenced blobs survive, unreferenced
// ones go, dry-run changes nothing, --delete-untagged follows tags, indexes and referrers, and a
// blob uploaded while gc runs is not taken.
import t from 'tap'
import { utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { runGc } from '../../../src/registry/gc.js'
import { createFsStorage } from '../../../src/registry/storage/fs-storage.js'
import { createSilentLogger } from '../../../src/log.js'
import { startRegistry, filesUnder, pushBlob, pushImage, digestOf, type Harness, OCI_INDEX, OCI_MANIFEST } from './fixtures/registry-harness.js'

async function gc (h: Harness, opts: { dryRun?: boolean, deleteUntagged?: boolean, graceMs?: number } = {}): Promise<{ removed: number, bytes: number, lines: string[] }> {
  const lines: string[] = []
  const r = await runGc({ storage: await createFsStorage(h.dir), uploadMaxAgeMs: h.config.uploadMaxAgeMs, log: createSilentLogger(), dryRun: opts.dryRun ?? false, deleteUntagged: opts.deleteUntagged ?? false, graceMs: opts.graceMs, out: l => lines.push(l) })
  return { ...r, lines }
}

/** Makes every blob look written an hour ago, as if pushed long before this gc. */
async function age (h: Harness): Promise<void> {
  const old = new Date(Date.now() - 3600 * 1000)
  for (const f of await filesUnder(h.dir)) {
    const path = f.split(' ')[0]
    if (path.startsWith('blobs/') || path.includes('/_manifests/revisions/')) await utimes(join(h.dir, path), old, old)
  }
}

t.test('referenced blobs survive, unreferenced go, bytes are reported; dry-run deletes nothing', async t => {
  const h = await startRegistry()
  t.teardown(h.close)
  const img = await pushImage(h, 'gc/app', 'v1')
  const orphan = await pushBlob(h, 'gc/app', 'orphan bytes!')
  await age(h)

  const before = await filesUnder(h.dir)
  const dry = await gc(h, { dryRun: true })
  t.same(dry, { removed: 1, bytes: 13, lines: dry.lines })
  t.ok(dry.lines.some(l => l.includes(orphan) && l.includes('would remove')))
  t.same(await filesUnder(h.dir), before, 'dry run wrote and removed nothing')

  const real = await gc(h)
  t.equal(real.removed, 1)
  t.equal(real.bytes, 13)
  t.ok(real.lines.some(l => l.includes(`removed blob ${orphan}`)))
  t.match(real.lines.at(-1), /removed 1 blob\(s\), 13 bytes reclaimed/)
  t.equal((await h.req('HEAD', `/v2/gc/app/blobs/${orphan}`)).status, 404)
  for (const d of [img.config, img.layer]) t.equal((await h.req('GET', `/v2/gc/app/blobs/${d}`)).status, 200, 'referenced blob kept')
  t.equal((await h.req('GET', '/v2/gc/app/manifests/v1')).status, 200)
  t.equal((await gc(h)).removed, 0, 'nothing left to remove')
})

t.test('blobs of a deleted manifest are reclaimed; untagged manifests only with --delete-untagged', async t => {
  const h = await startRegistry()
  t.teardown(h.close)
  const deleted = await pushImage(h, 'gc/del', 'v1', { layer: 'deleted layer' })
  const untagged = await pushImage(h, 'gc/del', 'v2', { layer: 'untagged layer' })
  const kept = await pushImage(h, 'gc/del', 'v3', { layer: 'kept layer' })
  await h.req('DELETE', `/v2/gc/del/manifests/${deleted.digest}`)
  await h.req('DELETE', '/v2/gc/del/manifests/v2')
  // An index (tagged) and a signature of v3 (untagged, but its subject is tagged) stay reachable.
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: kept.digest, size: kept.body.length }] }))
  await h.req('PUT', '/v2/gc/del/manifests/multi', { body: index, headers: { 'content-type': OCI_INDEX } })
  await h.req('DELETE', '/v2/gc/del/manifests/v3')
  const sig = await pushImage(h, 'gc/del', 'sig', { layer: 'signature', extra: { subject: { mediaType: OCI_MANIFEST, digest: kept.digest, size: kept.body.length } } })
  await h.req('DELETE', '/v2/gc/del/manifests/sig')
  await age(h)

  const first = await gc(h)
  t.ok(first.lines.some(l => l.includes(digestOf('deleted layer'))), 'the deleted manifest\'s layer')
  t.ok(first.lines.some(l => l.includes(deleted.digest)), 'the deleted manifest\'s own bytes')
  t.equal((await h.req('GET', `/v2/gc/del/manifests/${untagged.digest}`)).status, 200, 'untagged manifest kept by default')

  const second = await gc(h, { deleteUntagged: true })
  t.ok(second.lines.some(l => l.includes(`untagged manifest gc/del@${untagged.digest}`)))
  t.ok(second.lines.some(l => l.includes(digestOf('untagged layer'))))
  t.equal((await h.req('GET', `/v2/gc/del/manifests/${untagged.digest}`)).status, 404)
  t.equal((await h.req('GET', `/v2/gc/del/manifests/${kept.digest}`)).status, 200, 'reachable through the tagged index')
  t.equal((await h.req('GET', `/v2/gc/del/manifests/${sig.digest}`)).status, 200, 'a referrer of a reachable manifest')
  t.equal((await h.req('GET', `/v2/gc/del/blobs/${kept.layer}`)).status, 200)
})

t.test('a blob uploaded, or referenced by a push, while gc runs is not deleted', async t => {
  const h = await startRegistry()
  t.teardown(h.close)
  const config = await pushBlob(h, 'gc/live', '{}')
  const old = await pushBlob(h, 'gc/live', 'pushed before, referenced during')
  const orphan = await pushBlob(h, 'gc/live', 'really unreferenced')
  await age(h)
  let fresh = ''
  const r = await runGc({
    storage: await createFsStorage(h.dir),
    uploadMaxAgeMs: h.config.uploadMaxAgeMs,
    log: createSilentLogger(),
    dryRun: false,
    deleteUntagged: false,
    out: () => {},
    // Marking is done: none of these blobs is referenced. Now a client pushes.
    afterMark: async () => {
      fresh = await pushBlob(h, 'gc/live', 'uploaded during gc')
      const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: 2 }, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: old, size: 32 }] }))
      const put = await h.req('PUT', '/v2/gc/live/manifests/v1', { body, headers: { 'content-type': OCI_MANIFEST } })
      t.equal(put.status, 201, 'the manifest push during gc succeeds')
    },
  })
  t.equal((await h.req('GET', `/v2/gc/live/blobs/${fresh}`)).status, 200, 'uploaded during gc')
  t.equal((await h.req('GET', `/v2/gc/live/blobs/${old}`)).status, 200, 'referenced by a manifest pushed during gc')
  t.equal((await h.req('GET', `/v2/gc/live/blobs/${config}`)).status, 200)
  t.equal((await h.req('HEAD', `/v2/gc/live/blobs/${orphan}`)).status, 404, 'the orphan still goes')
  t.equal(r.removed, 1)
})

t.test('grace keeps recent unreferenced blobs', async t => {
  const h = await startRegistry()
  t.teardown(h.close)
  const recent = await pushBlob(h, 'gc/grace', 'recent')
  const r = await gc(h, { graceMs: 3600 * 1000 })
  t.equal(r.removed, 0)
  t.ok(r.lines.some(l => /kept 1 unreferenced/.test(l)))
  t.equal((await h.req('HEAD', `/v2/gc/grace/blobs/${recent}`)).status, 200)
})
