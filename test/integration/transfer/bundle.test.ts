// Air-gap bundles: export a cached two-platform upstream image and a hosted image from one crossdock
// into an OCI layout archive; import it into a second crossdock that has no upstream at all, into
// its cache (pulls then succeed, tag served STALE, blobs HIT) and its hosted registry. Resumable
// (a second import sends nothing), verified (a flipped byte is refused and nothing is stored),
// truncated or foreign archives are one-line errors.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { copyFile, open, rm, stat, truncate } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { startDoor, upstreamBlobGets } from '../registry-door/fixtures/door-harness.js'
import { startApp } from '../../helpers/start-app.js'
import { sha256 } from '../../helpers/fake-upstream.js'
import { addMultiArch, doorClient, DOCKERD_ACCEPT } from './fixtures.js'
import { parseImageReference } from '../../../src/client/image-content.js'
import { exportBundle, type BundleProgress } from '../../../src/bundle/exporter.js'
import { importBundle } from '../../../src/bundle/importer.js'
import { TarIndex } from '../../../src/bundle/tar-index.js'

const quiet: BundleProgress = { bytes: () => {}, line: () => {} }
const refs = (...xs: string[]) => xs.map(parseImageReference)

async function pushHosted (app: Parameters<typeof doorClient>[0], name: string, tag: string): Promise<{ manifest: string, blobs: string[] }> {
  const client = doorClient(app)
  const layer = randomBytes(50_000)
  const config = Buffer.from('{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]},"hosted":true}')
  for (const b of [layer, config]) await client.pushBlob(name, sha256(b), b.length, Readable.from([b]))
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(layer), size: layer.length }],
  }))
  await client.putManifest(name, tag, manifest, 'application/vnd.oci.image.manifest.v1+json')
  await client.close()
  return { manifest: sha256(manifest), blobs: [sha256(config), sha256(layer)] }
}

t.test('export from one crossdock, import into another with no upstream; pulls work there', async t => {
  const src = await startDoor(t)
  const img = addMultiArch(src.up, 'library/multi', '1')
  const hosted = await pushHosted(src.app, 'team/app', '1')
  const dir = t.testdir({})
  const bundle = join(dir, 'bundle.tar')

  const srcClient = doorClient(src.app)
  t.teardown(async () => { await srcClient.close() })
  const lines: string[] = []
  const out = await exportBundle({ client: srcClient, images: refs('docker.io/library/multi:1', 'team/app:1'), out: bundle, progress: { bytes: () => {}, line: l => lines.push(l) } })
  t.equal(out.images, 2)
  t.equal(upstreamBlobGets(src.up), 4, 'the export read the upstream image through the cache, once')

  // The archive: an OCI image layout.
  const tar = await TarIndex.open(bundle)
  t.same(JSON.parse((await tar.read(tar.get('oci-layout')!)).toString()), { imageLayoutVersion: '1.0.0' })
  const index = JSON.parse((await tar.read(tar.get('index.json')!)).toString())
  t.same(index.manifests.map((m: any) => [m.digest, m.annotations['org.opencontainers.image.ref.name']]), [
    [img.index, 'docker.io/library/multi:1'],
    [hosted.manifest, 'team/app:1'],
  ])
  for (const d of [img.index, ...img.platforms.map(p => p.manifest), ...img.blobs, hosted.manifest, ...hosted.blobs]) {
    const e = tar.get(`blobs/sha256/${d.slice(7)}`)
    t.ok(e, `${d} in the archive`)
    t.equal(sha256(await tar.read(e!)), d, `${d} bytes`)
  }

  // The second crossdock: no UPSTREAM_CONNECT_TO, so registry-1.docker.io does not resolve here.
  const dst = await startApp({ CACHE_MIN_FREE: '0' }, { keepDir: true })
  let dstRunning = true
  t.teardown(async () => { if (dstRunning) await dst.stop(); await rm(dst.dir, { recursive: true, force: true }) })
  const dstClient = doorClient(dst)
  let dstClientOpen = true
  t.teardown(async () => { if (dstClientOpen) await dstClient.close() })
  const before = await fetch(`http://127.0.0.1:${dst.registryPort}/v2/docker.io/library/multi/manifests/1`, { headers: { accept: DOCKERD_ACCEPT } })
  t.not(before.status, 200, 'nothing to pull before the import')

  const into = await importBundle({ client: dstClient, path: bundle, into: 'cache', name: undefined, progress: quiet }).catch(e => e)
  t.match(into, { message: /team\/app is not an upstream namespace/ }, 'a hosted name is refused for the cache')
  await copyBundleWith(bundle, join(dir, 'hub.tar'), 'docker.io/library/multi:1')
  const r = await importBundle({ client: dstClient, path: join(dir, 'hub.tar'), into: 'cache', progress: quiet })
  t.same(r.images, ['docker.io/library/multi:1'])

  // What dockerd asks: the tag (its own Accept), a platform manifest by digest, config and layer.
  const tag = await fetch(`http://127.0.0.1:${dst.registryPort}/v2/docker.io/library/multi/manifests/1`, { headers: { accept: DOCKERD_ACCEPT } })
  t.equal(tag.status, 200)
  t.equal(tag.headers.get('x-cache-status'), 'STALE', 'the tag from the cache while the upstream is unreachable')
  t.equal(tag.headers.get('docker-content-digest'), img.index)
  for (const p of img.platforms) {
    const m = await fetch(`http://127.0.0.1:${dst.registryPort}/v2/docker.io/library/multi/manifests/${p.manifest}`)
    t.equal(m.headers.get('x-cache-status'), 'HIT')
    for (const b of [p.config, p.layer]) {
      const blob = await fetch(`http://127.0.0.1:${dst.registryPort}/v2/docker.io/library/multi/blobs/${b}`)
      t.equal(blob.headers.get('x-cache-status'), 'HIT')
      t.equal(sha256(Buffer.from(await blob.arrayBuffer())), b)
    }
  }

  const again = await importBundle({ client: dstClient, path: join(dir, 'hub.tar'), into: 'cache', progress: quiet })
  t.same([again.sent, again.skipped], [0, 4], 'resumable: a second import sends nothing')

  const h = await importBundle({ client: dstClient, path: bundle, into: 'hosted', name: undefined, progress: quiet }).catch(e => e)
  t.match(h, { message: /docker\.io\/library\/multi.*405|UNSUPPORTED/ }, 'an upstream name is refused by the hosted registry')
  await copyBundleWith(bundle, join(dir, 'team.tar'), 'team/app:1')
  await importBundle({ client: dstClient, path: join(dir, 'team.tar'), into: 'hosted', progress: quiet })
  const m = await dstClient.manifest('team/app', '1')
  t.equal(m?.digest, hosted.manifest, 'the hosted image is there under its tag')
  t.equal(sha256(Buffer.from(await (await fetch(`http://127.0.0.1:${dst.registryPort}/v2/team/app/blobs/${hosted.blobs[1]}`)).arrayBuffer())), hosted.blobs[1])

  // A restart keeps what the operator vouched for: still served, with no upstream to ask.
  await dstClient.close()
  dstClientOpen = false
  await dst.stop()
  dstRunning = false
  const restarted = await startApp({ CACHE_MIN_FREE: '0' }, { dir: dst.dir })
  t.teardown(async () => { await restarted.stop() })
  const after = await fetch(`http://127.0.0.1:${restarted.registryPort}/v2/docker.io/library/multi/manifests/1`, { headers: { accept: DOCKERD_ACCEPT } })
  t.equal(after.status, 200, 'the imported tag after a restart')
  t.equal(after.headers.get('docker-content-digest'), img.index)
  const layer = img.platforms[0].layer
  const blob = await fetch(`http://127.0.0.1:${restarted.registryPort}/v2/docker.io/library/multi/blobs/${layer}`)
  t.equal(blob.status, 200, 'an imported layer after a restart')
  t.equal(sha256(Buffer.from(await blob.arrayBuffer())), layer)
  const other = await fetch(`http://127.0.0.1:${restarted.registryPort}/v2/docker.io/library/other/manifests/1`, { headers: { accept: DOCKERD_ACCEPT } })
  t.not(other.status, 200, 'trust is per imported repository')
  await other.arrayBuffer()
})

t.test('a corrupt or truncated archive: one-line errors, nothing stored', async t => {
  const src = await startDoor(t)
  const img = addMultiArch(src.up, 'library/multi', '1', 20_000)
  const dir = t.testdir({})
  const bundle = join(dir, 'bundle.tar')
  const srcClient = doorClient(src.app)
  t.teardown(async () => { await srcClient.close() })
  await exportBundle({ client: srcClient, images: refs('docker.io/library/multi:1'), out: bundle, progress: quiet })

  const dst = await startApp({ CACHE_MIN_FREE: '0' })
  t.teardown(async () => { await dst.stop() })
  const client = doorClient(dst)
  t.teardown(async () => { await client.close() })

  // One byte of the first layer flipped in place.
  const bad = join(dir, 'bad.tar')
  await copyFile(bundle, bad)
  const layer = (await TarIndex.open(bad)).get(`blobs/sha256/${img.platforms[0].layer.slice(7)}`)!
  const fh = await open(bad, 'r+')
  const byte = Buffer.alloc(1)
  await fh.read(byte, 0, 1, layer.offset + 100)
  await fh.write(Buffer.from([byte[0] ^ 0xff]), 0, 1, layer.offset + 100)
  await fh.close()
  const err = await importBundle({ client, path: bad, into: 'cache', progress: quiet }).then(() => undefined, e => e)
  t.match(err?.message, /DIGEST_INVALID/, 'the receiving side refused the blob')
  const head = await client.send('GET', `/import/cache/docker.io/library/multi/blobs/${img.platforms[0].layer}`)
  t.equal(head.statusCode, 404, 'nothing of it stored')
  await head.body.dump()

  const cut = join(dir, 'cut.tar')
  await copyFile(bundle, cut)
  await truncate(cut, (await stat(cut)).size - 3000)
  await t.rejects(importBundle({ client, path: cut, into: 'cache', progress: quiet }), { message: /truncated tar archive|not an OCI image layout/ })
  const notTar = join(dir, 'not.tar')
  await copyFile(new URL(import.meta.url), notTar)
  await t.rejects(importBundle({ client, path: notTar, into: 'cache', progress: quiet }), { message: /not a tar archive/ })

  // The good archive afterwards completes the interrupted import, skipping what is there.
  const r = await importBundle({ client, path: bundle, into: 'cache', progress: quiet })
  t.ok(r.skipped >= 1, `resumed: ${r.skipped} blob(s) already there`)
  t.equal(r.sent + r.skipped, 4)
})

t.test('export errors: unknown image, unreachable server; no archive is left behind', async t => {
  const src = await startDoor(t)
  const dir = t.testdir({})
  const client = doorClient(src.app)
  t.teardown(async () => { await client.close() })
  await t.rejects(exportBundle({ client, images: refs('team/nope:1'), out: join(dir, 'x.tar'), progress: quiet }), { message: /unknown image team\/nope:1/ })
  const { RegistryClient } = await import('../../../src/client/registry-client.js')
  const down = new RegistryClient({ baseUrl: 'http://127.0.0.1:9' })
  await t.rejects(exportBundle({ client: down, images: refs('team/app:1'), out: join(dir, 'x.tar'), progress: quiet }), { message: /cannot reach http:\/\/127\.0\.0\.1:9: connection refused/ })
  await down.close()
  await t.rejects(stat(join(dir, 'x.tar')))
  await t.rejects(stat(join(dir, 'x.tar.partial')))
})

/** A copy of `from` whose index.json lists only `refName` (the archive's blobs stay). */
async function copyBundleWith (from: string, to: string, refName: string): Promise<void> {
  const tar = await TarIndex.open(from)
  const entry = tar.get('index.json')!
  const index = JSON.parse((await tar.read(entry)).toString())
  index.manifests = index.manifests.filter((m: any) => m.annotations['org.opencontainers.image.ref.name'] === refName)
  // Same length, so it can be patched in place: pad with spaces (JSON ignores them).
  const text = Buffer.alloc(entry.size, 0x20)
  Buffer.from(JSON.stringify(index)).copy(text)
  await copyFile(from, to)
  const fh = await open(to, 'r+')
  await fh.write(text, 0, text.length, entry.offset)
  await fh.close()
}
