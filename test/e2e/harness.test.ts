// The e2e harness itself, without crossdock: real clients straight to a real registry. Cheap, and it
// tells "the harness rotted" apart from "crossdock broke" when the proxy tests fail.
import t from 'tap'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import {
  requirePrivateNetns, createScope, startDistribution, seedImage, buildImage, startDockerd,
  startContainerd, skopeo, mountsUnder, pidGone, certDirFor, FIXTURE,
  type BuiltImage, type Distribution, type Dockerd,
} from '../helpers/e2e/index.js'

const HOST = '127.0.0.20' // this file's loopback address (test/e2e/README.md)

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'harness')

  // tap ends the file once its queue of subtests is empty, so async setup goes in before() (called
  // before any t.test, else it is deferred and not awaited), never in top-level awaits.
  let upstream!: Distribution
  let tiny!: BuiltImage
  let dockerd!: Dockerd
  t.before(async () => {
    upstream = await startDistribution(scope, { host: HOST, name: 'upstream' })
    tiny = await seedImage(scope, upstream, 'library/tiny', '1', { randomBytes: 512 * 1024 })
    dockerd = await startDockerd(scope, { trust: [FIXTURE.testCa] })
  })

  t.test('images are deterministic and well-formed', async t => {
    const a = buildImage(scope.path('det-a'), '1', { randomBytes: 4096, platforms: ['linux/amd64', 'linux/arm64/v8'] })
    const b = buildImage(scope.path('det-b'), '1', { randomBytes: 4096, platforms: ['linux/amd64', 'linux/arm64/v8'] })
    t.equal(a.digest, b.digest, 'same spec, same index digest')
    t.equal(a.mediaType, 'application/vnd.oci.image.index.v1+json', 'two platforms make an OCI index')
    t.equal(a.manifests.length, 2, 'one manifest per platform')
    const other = buildImage(scope.path('det-c'), '1', { randomBytes: 4096, seed: 'other' })
    t.not(other.manifests[0]?.digest, a.manifests[0]?.digest, 'another seed, another image')
    const hex = a.digest.slice('sha256:'.length)
    const indexBytes = readFileSync(scope.path('det-a', 'blobs/sha256', hex))
    t.equal(createHash('sha256').update(indexBytes).digest('hex'), hex, 'blob file name is its digest')
  })

  t.test('distribution serves the seeded image over verified TLS and logs requests', async t => {
    t.ok(upstream.requests('PUT', '/v2/library/tiny/manifests/1').some(e => e.status === 201), 'manifest PUT logged as 201')
    const r = await skopeo(scope, ['inspect', '--raw', '--cert-dir', certDirFor(scope, FIXTURE.testCa), `docker://${upstream.address}/library/tiny:1`])
    t.equal(r.code, 0, `skopeo inspect with the fixture CA exits 0 ${r.stderr}`)
    t.equal(`sha256:${createHash('sha256').update(r.stdout).digest('hex')}`, tiny.digest, 'raw manifest hashes to the built digest')
    const q = await skopeo(scope, ['inspect', '--raw', `docker://${upstream.address}/library/tiny:1`])
    t.not(q.code, 0, 'without the fixture CA, TLS verification fails')
    t.match(q.stderr, /x509|certificate/, 'with a certificate error')
  })

  t.test('dockerd pulls, runs and re-pulls straight from the registry', async t => {
    const ref = `${upstream.address}/library/tiny:1`
    await dockerd.dockerOk(['pull', '-q', ref])
    t.equal((await dockerd.dockerOk(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', ref])).trim(), `${upstream.address}/library/tiny@${tiny.digest}`, 'RepoDigest is the built manifest digest')
    for (const layer of tiny.layers) {
      t.equal((await upstream.waitForRequests('GET', `/v2/library/tiny/blobs/${layer.digest}`)).length, 1, `layer ${layer.digest.slice(0, 19)} fetched once`)
    }
    t.equal((await dockerd.dockerOk(['run', '--rm', '--network', 'none', ref])).trim(), 'hello from e2e', 'image runs')

    // Upstream down: the pull fails. Restarted on the same port and storage: it works again.
    await dockerd.dockerOk(['rmi', ref])
    await upstream.stop()
    t.notOk(upstream.running(), 'registry stopped')
    const down = await dockerd.docker(['pull', '-q', ref])
    t.not(down.code, 0, 'pull fails while the registry is down')
    t.match(down.stderr, /connection refused/, 'because nothing listens')
    const port = upstream.port
    await upstream.start()
    t.equal(upstream.port, port, 'same port after restart')
    await dockerd.dockerOk(['pull', '-q', ref])
    t.equal((await upstream.waitForRequests('GET', `/v2/library/tiny/blobs/${tiny.layers[1]?.digest ?? ''}`, 2)).length, 2, 'blob served again from the same storage')
  })

  t.test('plain-HTTP registry with htpasswd auth', async t => {
    const creds = { user: 'e2e', password: 's3cret' }
    const plain = await startDistribution(scope, { host: HOST, name: 'plain-auth', tls: false, auth: creds })
    t.match(plain.url, /^http:\/\//, 'plain HTTP url')
    const img = await seedImage(scope, plain, 'team/app', 'v1', { seed: 'app', randomBytes: 1024 }, creds)
    const anon = await skopeo(scope, ['inspect', '--raw', '--tls-verify=false', `docker://${plain.address}/team/app:v1`])
    t.not(anon.code, 0, 'anonymous read refused')
    t.ok((await plain.waitForRequests('GET', '/v2/')).some(e => e.status === 401), '401 logged for the anonymous ping')
    const ok = await skopeo(scope, ['inspect', '--raw', '--tls-verify=false', '--creds', 'e2e:s3cret', `docker://${plain.address}/team/app:v1`])
    t.equal(ok.code, 0, `skopeo inspect with credentials exits 0 ${ok.stderr}`)
    t.equal(`sha256:${createHash('sha256').update(ok.stdout).digest('hex')}`, img.digest, 'raw manifest hashes to the built digest')
    t.ok((await plain.waitForRequests('GET', '/v2/team/app/manifests/v1', 2)).some(e => e.status === 200), 'authenticated GET logged as 200')
  })

  t.test('ctr pulls from the registry over verified TLS (hosts.toml)', async t => {
    const ctd = await startContainerd(scope)
    // ctr talks plain HTTP to loopback addresses by default; a hosts.toml says https and which CA.
    const hostsDir = ctd.writeHostsDir({
      [upstream.address]: `server = "${upstream.url}"\n[host."${upstream.url}"]\n  capabilities = ["pull", "resolve"]\n  ca = "${FIXTURE.testCa}"\n`,
    })
    await ctd.ctrOk(['images', 'pull', '--hosts-dir', hostsDir, `${upstream.address}/library/tiny:1`])
    const ls = await ctd.ctrOk(['images', 'ls'])
    t.match(ls, tiny.digest, 'ctr records the manifest digest')
    t.ok((await upstream.waitForRequests('HEAD', '/v2/library/tiny/manifests/1')).some(e => /containerd/.test(e.userAgent)), 'containerd UA in the access log')
    await ctd.stop()
    t.ok(pidGone(ctd.pid), 'containerd stopped')
  })

  t.test('dockerd stops cleanly: no process, no mounts left', async t => {
    await dockerd.stop()
    t.ok(pidGone(dockerd.pid), 'dockerd gone')
    t.same(mountsUnder(scope.dir), [], 'no mounts under the state dir')
    t.notOk(existsSync(dockerd.host.slice('unix://'.length)), 'socket removed')
  })
}

