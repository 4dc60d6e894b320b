// Acceptance test of issue 19 items 4–5 with real clients, CNCF distribution as Docker Hub:
// - `crossdock warm docker.io/library/warmed:1`, then a fresh dockerd pulls it through the proxy
//   door with 0 upstream blob GETs (distribution's access log);
// - `crossdock export` on crossdock A, `crossdock import --into cache` on crossdock B, which has no
//   upstream at all (no UPSTREAM_CONNECT_TO: registry-1.docker.io does not even resolve in this
//   namespace), then a fresh dockerd runs `docker pull tiny:1` through B and the image runs;
// - skopeo reads crossdock's archive (`oci-archive:bundle.tar:docker.io/library/tiny:1`), and writes
//   one (`oci-archive:skopeo.tar:team/sk:1`) that `crossdock import --into hosted` loads into B.
import t from 'tap'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import {
  requirePrivateNetns, createScope, startDistribution, seedImage, startCrossdock, startDockerd, skopeo, run, CROSSDOCK_CLI,
  type BuiltImage, type Crossdock, type Distribution,
} from '../helpers/e2e/index.js'

const HOST_A = '127.0.0.34' // this file's loopback addresses (test/e2e/README.md)
const HOST_B = '127.0.0.35'

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'warm-bundle')
  let upstream!: Distribution
  let tiny!: BuiltImage
  let warmed!: BuiltImage
  let a!: Crossdock
  let b!: Crossdock
  const cli = async (args: string[]) => await run(process.execPath, [CROSSDOCK_CLI, ...args], { timeoutMs: 120_000 })
  const blobGets = (): number => upstream.requests('GET', /\/blobs\/sha256:/).length

  t.before(async () => {
    upstream = await startDistribution(scope, { host: HOST_A, name: 'upstream' })
    tiny = await seedImage(scope, upstream, 'library/tiny', '1', { seed: 'bundle-tiny', randomBytes: 256 * 1024, platforms: ['linux/amd64', 'linux/arm64'] })
    warmed = await seedImage(scope, upstream, 'library/warmed', '1', { seed: 'warmed', randomBytes: 512 * 1024 })
    a = await startCrossdock(scope, { host: HOST_A, name: 'crossdock-a', connectTo: { 'registry-1.docker.io:443': upstream.address } })
    b = await startCrossdock(scope, { host: HOST_B, name: 'crossdock-b' })
  })

  t.test('crossdock warm, then dockerd pulls with 0 upstream blob GETs', async t => {
    const r = await cli(['warm', '--registry', `http://${a.registryAddress}`, 'docker.io/library/warmed:1'])
    t.equal(r.code, 0, `crossdock warm exits 0: ${r.stderr}`)
    // The manifest's prefetch may land a blob before the warm-up asks: then it counts as already cached.
    const summary = /docker\.io\/library\/warmed:1: warm \((\d+) fetched[^;)]*(?:; (\d+) already cached)?\)/.exec(r.stdout)
    t.ok(summary, `plain lines when stdout is not a terminal: ${r.stdout}`)
    t.equal(Number(summary?.[1]) + Number(summary?.[2] ?? 0), 3, 'config + 2 layers, fetched or found cached')
    t.equal(blobGets(), 3, 'the warm-up fetched config + 2 layers')

    const dockerd = await startDockerd(scope, { name: 'dockerd-warm', httpsProxy: a.proxyUrl, trust: [a.caCert] })
    await dockerd.dockerOk(['pull', '-q', 'warmed:1'])
    t.equal((await dockerd.dockerOk(['run', '--rm', '--network', 'none', 'warmed:1'])).trim(), 'hello from e2e', 'the image runs')
    t.ok(a.logs.some(l => l.msg === 'request' && String(l.path).includes(warmed.layers[1].digest) && l.cacheStatus === 'HIT'), 'dockerd got the layer from the cache')
    t.equal(blobGets(), 3, '0 upstream blob GETs for the pull')

    const again = await cli(['warm', '--registry', `http://${a.registryAddress}`, 'docker.io/library/warmed:1'])
    t.match(again.stdout, '(0 fetched, 0 B; 3 already cached)', 'a second warm skips what is cached')
    const bad = await cli(['warm', '--registry', `http://${a.registryAddress}`, 'docker.io/library/nope:1'])
    t.equal(bad.code, 1)
    t.match(bad.stderr, 'crossdock warm: unknown image docker.io/library/nope:1')
    const down = await cli(['warm', '--registry', `http://${HOST_B}:9`, 'docker.io/library/warmed:1'])
    t.same([down.code, down.stderr.trim()], [1, `crossdock warm: cannot reach http://${HOST_B}:9: connection refused (is crossdock running, and is this its REGISTRY_PORT?) (ECONNREFUSED)`])
    const usage = await cli(['warm', 'Docker.io/x'])
    t.equal(usage.code, 2)
    t.match(usage.stderr, /^crossdock warm: bad image reference "Docker\.io\/x"/)
  })

  t.test('export on A, import --into cache on B (no upstream), docker pull from B', async t => {
    const bundle = scope.path('bundle.tar')
    const exp = await cli(['export', '--registry', `http://${a.registryAddress}`, '-o', bundle, 'docker.io/library/tiny:1'])
    t.equal(exp.code, 0, `export exits 0: ${exp.stderr}`)
    const imp = await cli(['import', '--registry', `http://${b.registryAddress}`, '--into', 'cache', bundle])
    t.equal(imp.code, 0, `import exits 0: ${imp.stderr}`)
    t.match(imp.stdout, '1 image(s) imported into cache (4 blobs sent, 0 already there)')
    const again = await cli(['import', '--registry', `http://${b.registryAddress}`, '--into', 'cache', bundle])
    t.match(again.stdout, '(0 blobs sent, 4 already there)', 'resumable: run again, nothing is sent')

    const dockerd = await startDockerd(scope, { name: 'dockerd-b', httpsProxy: b.proxyUrl, trust: [b.caCert] })
    await dockerd.dockerOk(['pull', '-q', 'tiny:1'])
    t.equal((await dockerd.dockerOk(['run', '--rm', '--network', 'none', 'tiny:1'])).trim(), 'hello from e2e', 'the imported image runs')
    t.ok(b.logs.some(l => l.msg === 'request' && String(l.path) === '/v2/library/tiny/manifests/1' && l.cacheStatus === 'STALE'), 'B served the tag from its cache (the upstream unreachable)')
    t.ok(b.logs.some(l => l.msg === 'request' && String(l.path).includes(tiny.layers[1].digest) && l.cacheStatus === 'HIT'), 'and the layer')
  })

  t.test('skopeo reads crossdock\'s archive, and writes one crossdock imports', async t => {
    const bundle = scope.path('bundle.tar')
    const out = scope.path('skopeo-dir')
    const r = await skopeo(scope, ['copy', '--override-arch', 'arm64', `oci-archive:${bundle}:docker.io/library/tiny:1`, `dir:${out}`])
    t.equal(r.code, 0, `skopeo copy oci-archive:… exits 0: ${r.stderr}`)
    const layer = tiny.layers[1].digest
    t.equal(`sha256:${createHash('sha256').update(readFileSync(`${out}/${layer.slice(7)}`)).digest('hex')}`, layer, 'the layer arrived intact')

    const skArchive = scope.path('skopeo.tar')
    const w = await skopeo(scope, ['copy', '--src-tls-verify=false', `docker://${a.registryAddress}/docker.io/library/warmed:1`, `oci-archive:${skArchive}:team/sk:1`])
    t.equal(w.code, 0, `skopeo writes an oci-archive: ${w.stderr}`)
    const imp = await cli(['import', '--registry', `http://${b.registryAddress}`, skArchive])
    t.equal(imp.code, 0, `crossdock import of skopeo's archive exits 0: ${imp.stderr}`)
    const m = await fetch(`http://${b.registryAddress}/v2/team/sk/manifests/1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' } })
    t.equal(m.status, 200, 'the hosted registry of B has team/sk:1')
    const back = await skopeo(scope, ['copy', '--src-tls-verify=false', `docker://${b.registryAddress}/team/sk:1`, `dir:${scope.path('sk-back')}`])
    t.equal(back.code, 0, `and serves it: ${back.stderr}`)
    const bare = scope.path('bare.tar')
    await skopeo(scope, ['copy', '--src-tls-verify=false', `docker://${a.registryAddress}/docker.io/library/warmed:1`, `oci-archive:${bare}:1`])
    const noName = await cli(['import', '--registry', `http://${b.registryAddress}`, bare])
    t.equal(noName.code, 1)
    t.match(noName.stderr, 'the archive names only a tag: pass --name <repository>')
    t.equal((await cli(['import', '--registry', `http://${b.registryAddress}`, '--name', 'team/bare', bare])).code, 0, 'with --name it imports')
  })
}
