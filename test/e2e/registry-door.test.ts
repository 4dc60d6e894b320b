// Acceptance test of issue 7, "one endpoint without a proxy": real clients pull upstream images
// from crossdock's registry port with no CA and no HTTPS_PROXY, from a real distribution registry
// standing in for Docker Hub and ghcr.io (UPSTREAM_CONNECT_TO):
// - containerd mirror mode (`ctr images pull --hosts-dir`, `_default/hosts.toml` as crossdock's
//   /setup/containerd prints it), two upstreams, then a fresh containerd root served from the cache;
// - skopeo with a registries.conf mirror `location = "<crossdock>/docker.io"` (CRI-O/podman's way);
// - retagging into a hosted name with `skopeo copy` moves no blob from the upstream;
// - a real dockerd listing the registry port in `insecure-registries` pulls `<ip>:<port>/docker.io/…`.
//
// What containerd 1.6.20 sent to crossdock for `docker.io/library/tiny:1` in mirror mode (asserted
// below from crossdock's request log; no /v2/ ping, since nothing answered 401):
//   HEAD /v2/library/tiny/manifests/1?ns=docker.io
//   GET  /v2/library/tiny/manifests/sha256:<manifest>?ns=docker.io
//   GET  /v2/library/tiny/blobs/sha256:<config>?ns=docker.io
//   GET  /v2/library/tiny/blobs/sha256:<layer>?ns=docker.io        (one per layer, in parallel)
// and for `ghcr.io/e2e-org/tiny:1` the same with `/v2/e2e-org/tiny/…?ns=ghcr.io` (minus the busybox
// layer containerd already holds). dockerd with insecure-registries: `GET /v2/` (after its HTTPS
// attempt fails), then `HEAD /v2/docker.io/library/tiny/manifests/1`, manifest by digest, blobs.
import t from 'tap'
import { createHash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { get } from 'node:http'
import {
  requirePrivateNetns, createScope, startDistribution, seedImage, startCrossdock, startDockerd, startContainerd, skopeo,
  MEDIA, waitFor,
  type BuiltImage, type Crossdock, type Distribution, type LogLine,
} from '../helpers/e2e/index.js'

const HOST = '127.0.0.25' // this file's loopback address (test/e2e/README.md)
const ACCEPT = `${MEDIA.index}, ${MEDIA.manifest}, application/vnd.docker.distribution.manifest.v2+json`

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'door')
  let upstream!: Distribution
  let hubTiny!: BuiltImage
  let ghcrTiny!: BuiltImage
  let crossdock!: Crossdock
  let registry!: string

  t.before(async () => {
    upstream = await startDistribution(scope, { host: HOST, name: 'upstream' })
    hubTiny = await seedImage(scope, upstream, 'library/tiny', '1', { seed: 'door-hub', randomBytes: 256 * 1024 })
    ghcrTiny = await seedImage(scope, upstream, 'e2e-org/tiny', '1', { seed: 'door-ghcr', randomBytes: 128 * 1024 })
    crossdock = await startCrossdock(scope, {
      host: HOST,
      connectTo: { 'registry-1.docker.io:443': upstream.address, 'ghcr.io:443': upstream.address },
    })
    registry = crossdock.registryAddress
  })

  const blobGets = (): number => upstream.requests('GET', /\/blobs\/sha256:/).length
  const doorLines = (): LogLine[] => crossdock.logs.filter(l => l.msg === 'request' && l.door === 'registry')
  // The door's own line, written when it routes a request (the request line comes when the
  // response finishes, and a client that hangs up right after the last byte can skip 'finish').
  const routed = (): LogLine[] => crossdock.logs.filter(l => l.msg === 'registry door: upstream namespace')

  t.test('containerd mirror mode: _default/hosts.toml from /setup/containerd, two upstreams, then a fresh root from the cache', async t => {
    const setup = await httpGet(`${crossdock.proxyUrl}/setup/containerd`)
    t.equal(setup.status, 200, 'GET /setup/containerd on the proxy door')
    t.match(setup.body, `[host."http://${registry}"]`, 'it points at the registry port')

    const ctd = await startContainerd(scope, 'containerd')
    const hostsDir = ctd.writeHostsDir({ _default: setup.body })
    const seenBefore = routed().length
    await ctd.ctrOk(['images', 'pull', '--hosts-dir', hostsDir, 'docker.io/library/tiny:1'])
    await ctd.ctrOk(['images', 'pull', '--hosts-dir', hostsDir, 'ghcr.io/e2e-org/tiny:1'])
    const listed = await ctd.ctrOk(['images', 'ls'])
    t.match(listed, hubTiny.digest, 'ctr recorded the Docker Hub manifest digest')
    t.match(listed, ghcrTiny.digest, 'and the ghcr.io one')

    // containerd already holds the busybox layer after the first image: it fetches only the new one.
    for (const [ns, host, repo, image, newLayers] of [
      ['docker.io', 'registry-1.docker.io', 'library/tiny', hubTiny, hubTiny.layers],
      ['ghcr.io', 'ghcr.io', 'e2e-org/tiny', ghcrTiny, ghcrTiny.layers.slice(1)],
    ] as const) {
      const config = image.manifests[0].config
      const expected = [
        `HEAD /v2/${repo}/manifests/1?ns=${ns}`,
        `GET /v2/${repo}/manifests/${image.digest}?ns=${ns}`,
        `GET /v2/${repo}/blobs/${config.digest}?ns=${ns}`,
        ...newLayers.map(l => `GET /v2/${repo}/blobs/${l.digest}?ns=${ns}`),
      ]
      const sentNow = (): string[] => routed().slice(seenBefore).filter(l => l.host === host).map(l => `${String(l.method)} ${String(l.path)}`)
      // Lines arrive through crossdock's stdout pipe: give the last ones a moment after ctr exits.
      const sent = await waitFor(`${expected.length} routed lines for ${ns}`, () => sentNow().length >= expected.length && sentNow(), { timeoutMs: 5000 }).catch(() => sentNow())
      t.same([...sent].sort(), [...expected].sort(), `containerd sent exactly these paths for ${ns}, routed to ${host}`)
      for (const blob of [config, ...newLayers]) {
        t.ok((await upstream.waitForRequests('GET', `/v2/${repo}/blobs/${blob.digest}`)).some(e => e.status === 200), `upstream served ${repo} ${blob.digest.slice(0, 19)}…`)
      }
    }
    const statuses = doorLines().filter(l => String(l.path).includes('?ns=')).map(l => l.status)
    t.ok(statuses.length > 0 && statuses.every(s => s === 200), 'crossdock answered every ?ns= request 200')

    // A second containerd with an empty root: every blob comes out of crossdock's cache.
    const before = blobGets()
    const fresh = await startContainerd(scope, 'containerd-fresh')
    const freshDir = fresh.writeHostsDir({ _default: setup.body })
    const routedBefore = routed().length
    await fresh.ctrOk(['images', 'pull', '--hosts-dir', freshDir, 'docker.io/library/tiny:1'])
    await fresh.ctrOk(['images', 'pull', '--hosts-dir', freshDir, 'ghcr.io/e2e-org/tiny:1'])
    t.match(await fresh.ctrOk(['images', 'ls']), hubTiny.digest, 'the fresh root has the image')
    const freshBlobs = (): number => routed().slice(routedBefore).filter(l => String(l.path).includes('/blobs/')).length
    t.equal(await waitFor('the fresh root\'s blob requests', () => freshBlobs() >= 5 && freshBlobs(), { timeoutMs: 5000 }).catch(freshBlobs), 3 + 2, 'it fetched every blob from crossdock (3 for tiny, 2 new for ghcr)')
    t.equal(blobGets(), before, 'the upstream access log shows no blob GET for the second pull')
  })

  t.test('skopeo with a registries.conf mirror on <crossdock>/docker.io (CRI-O, podman)', async t => {
    const conf = scope.path('registries.conf')
    writeFileSync(conf, [
      'unqualified-search-registries = []',
      '[[registry]]',
      'prefix = "docker.io"',
      'location = "docker.io"',
      '[[registry.mirror]]',
      `location = "${registry}/docker.io"`,
      'insecure = true',
      '',
    ].join('\n'))
    const before = blobGets()
    const out = scope.path('skopeo-out')
    const r = await skopeo(scope, ['--registries-conf', conf, 'copy', 'docker://docker.io/library/tiny:1', `dir:${out}`])
    t.equal(r.code, 0, `skopeo copy through the mirror exits 0 ${r.stderr}`)
    const random = hubTiny.layers[1].digest
    t.equal(sha256File(`${out}/${random.slice('sha256:'.length)}`), random, 'the layer arrived intact')
    t.ok(routed().some(l => l.path === `/v2/docker.io/library/tiny/blobs/${random}` && l.host === 'registry-1.docker.io'), 'fetched from crossdock under /v2/docker.io/…')
    t.equal(blobGets(), before, 'served from the cache: no upstream blob GET')
  })

  t.test('retag docker.io/library/tiny:1 as team/base:1 with skopeo copy: no blob from the upstream', async t => {
    const before = blobGets()
    const r = await skopeo(scope, ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${registry}/docker.io/library/tiny:1`, `docker://${registry}/team/base:1`])
    t.equal(r.code, 0, `skopeo copy exits 0 ${r.stderr}`)
    const m = await httpGet(`http://${registry}/v2/team/base/manifests/1`, { accept: ACCEPT })
    t.equal(m.status, 200, 'the hosted repository has the tag')
    t.equal(m.headers['docker-content-digest'], hubTiny.digest, 'with the upstream\'s manifest digest')
    t.equal(blobGets(), before, 'no blob GET reached the upstream')
    // skopeo mounts when its blob-info cache knows the source location, else it reads the blob
    // through the door (a cache HIT) and uploads it. Both move no upstream bytes.
    const mounts = doorLines().filter(l => l.method === 'POST' && String(l.path).includes('mount=') && String(l.path).startsWith('/v2/team/base/'))
    t.comment(`mount attempts: ${mounts.map(l => `${String(l.path)} ${String(l.status)}`).join('; ') || 'none'}`)
    t.ok(mounts.every(l => l.status === 201), 'every mount skopeo tried of a cached blob was answered 201 (copied from the cache)')
  })

  t.test('dockerd with the registry port in insecure-registries pulls <ip>:<port>/docker.io/…', async t => {
    // No HTTPS_PROXY and no CA: only daemon.json's insecure-registries.
    const dockerd = await startDockerd(scope, { config: { 'insecure-registries': [registry] } })
    const hubRef = `${registry}/docker.io/library/tiny:1`
    await dockerd.dockerOk(['pull', '-q', hubRef])
    t.equal((await dockerd.dockerOk(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', hubRef])).trim(), `${registry}/docker.io/library/tiny@${hubTiny.digest}`, 'RepoDigest is the upstream manifest')
    t.equal((await dockerd.dockerOk(['run', '--rm', '--network', 'none', hubRef])).trim(), 'hello from e2e', 'pulled layers are intact: the image runs')
    t.ok(routed().some(l => l.method === 'HEAD' && l.path === '/v2/docker.io/library/tiny/manifests/1' && l.host === 'registry-1.docker.io'), 'dockerd resolved the tag with HEAD through the prefix')
    await dockerd.dockerOk(['pull', '-q', `${registry}/ghcr.io/e2e-org/tiny:1`])
    t.ok(routed().some(l => l.host === 'ghcr.io' && l.via === 'prefix' && l.path === `/v2/ghcr.io/e2e-org/tiny/blobs/${ghcrTiny.layers[1].digest}`), 'and pulled ghcr.io under its prefix')
    t.equal((await dockerd.dockerOk(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', `${registry}/ghcr.io/e2e-org/tiny:1`])).trim(), `${registry}/ghcr.io/e2e-org/tiny@${ghcrTiny.digest}`, 'RepoDigest is the ghcr.io manifest')
  })
}

function sha256File (path: string): string {
  return `sha256:${createHash('sha256').update(readFileSync(path)).digest('hex')}`
}

async function httpGet (url: string, headers: Record<string, string> = {}): Promise<{ status: number, headers: Record<string, string | string[] | undefined>, body: string }> {
  return await new Promise((resolve, reject) => {
    get(url, { agent: false, headers }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }))
    }).once('error', reject)
  })
}
