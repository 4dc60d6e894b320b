// The container image, built and run for real (issue 15): `docker build` of the repository's
// Dockerfile on a stand-in BASE_IMAGE (debootstrap bookworm + this machine's node and npm cache,
// made by scripts/make-image-base.sh outside the netns: the build is offline), then the container
// runs on a LISTEN_HOST other than 127.0.0.1; its own HEALTHCHECK must report healthy there,
// `crossdock` is on its PATH, and skopeo pulls a Docker Hub image through the container's proxy door
// from a distribution registry standing in for Docker Hub.
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import {
  requirePrivateNetns, createScope, startDistribution, seedImage, startDockerd, skopeo, freePort, waitFor, FIXTURE, REPO_ROOT,
  type BuiltImage, type Distribution, type Dockerd,
} from '../helpers/e2e/index.js'

const HOST = '127.0.0.29' // this file's loopback address (test/e2e/README.md)
const BASE_TAR = process.env.CROSSDOCK_IMAGE_BASE ?? '/tmp/crossdock-image-base/base.tar'
const BASE = 'crossdock-test-base:bookworm'

if (!existsSync(BASE_TAR)) {
  t.plan(0, `no stand-in base image at ${BASE_TAR}: npm test makes it with scripts/make-image-base.sh (needs root and apt's Debian mirror)`)
} else if (requirePrivateNetns(t)) {
  // Importing the base and building take minutes on a busy 2-core machine (more than tap's 300 s).
  t.setTimeout(900_000)
  const scope = createScope(t, 'image')
  let upstream!: Distribution
  let tiny!: BuiltImage
  let dockerd!: Dockerd

  t.before(async () => {
    upstream = await startDistribution(scope, { host: HOST, name: 'upstream' })
    tiny = await seedImage(scope, upstream, 'library/tiny', '1', { seed: 'image', randomBytes: 64 * 1024 })
    dockerd = await startDockerd(scope, { storageDriver: 'overlay2' })
  })

  t.test('docker build with --build-arg BASE_IMAGE, offline', async t => {
    await dockerd.dockerOk(['import', '--change', 'ENV npm_config_offline=true', BASE_TAR, BASE], { timeoutMs: 300_000 })
    const built = await dockerd.docker(['build', '-q', '--build-arg', `BASE_IMAGE=${BASE}`, '-t', 'crossdock:e2e', REPO_ROOT], { timeoutMs: 600_000 })
    t.equal(built.code, 0, built.code === 0 ? 'docker build exits 0' : built.stderr.slice(-3000))
    const config = JSON.parse(await dockerd.dockerOk(['image', 'inspect', '--format', '{{json .Config}}', 'crossdock:e2e'])) as { User: string, Entrypoint: string[], Healthcheck: { Test: string[] } }
    t.equal(config.User, 'crossdock')
    t.same(config.Entrypoint, ['crossdock'])
  })

  t.test('the container serves on LISTEN_HOST, reports healthy there, and proxies a pull', async t => {
    const proxyPort = await freePort(HOST)
    const registryPort = await freePort(HOST)
    const id = (await dockerd.dockerOk(['run', '-d', '--network', 'host', '--health-interval', '1s', '--health-start-period', '0s',
      '-v', `${FIXTURE.testCa}:/fixture/test-ca.crt:ro`,
      '-e', `LISTEN_HOST=${HOST}`, '-e', `PROXY_PORT=${proxyPort}`, '-e', `REGISTRY_PORT=${registryPort}`,
      '-e', `UPSTREAM_CONNECT_TO=registry-1.docker.io:443:${upstream.address}`, '-e', 'UPSTREAM_CA_FILE=/fixture/test-ca.crt',
      'crossdock:e2e'])).trim()
    scope.defer('remove the container', async () => { await dockerd.docker(['rm', '-f', id]) })
    const health = await waitFor('the container\'s HEALTHCHECK', async () => {
      const s = (await dockerd.dockerOk(['inspect', '--format', '{{.State.Health.Status}}', id])).trim()
      return s === 'healthy' || s === 'unhealthy' ? s : undefined
    }, { timeoutMs: 60_000, intervalMs: 250 }).catch((err: Error) => err.message)
    t.equal(health, 'healthy', `HEALTHCHECK at ${HOST}:${proxyPort}`)
    t.equal((await dockerd.dockerOk(['exec', id, 'crossdock', '--version'])).trim(), `crossdock ${(JSON.parse(readFileSync(`${REPO_ROOT}/package.json`, 'utf8')) as { version: string }).version}`, 'crossdock is on PATH')

    const ca = scope.path('container-ca.crt')
    await dockerd.dockerOk(['cp', `${id}:/ca/ca.crt`, ca])
    const copied = await skopeo(scope, ['copy', 'docker://registry-1.docker.io/library/tiny:1', `oci:${scope.path('pulled')}:1`], { httpsProxy: `http://${HOST}:${proxyPort}`, trust: [ca] })
    t.equal(copied.code, 0, copied.stderr)
    const index = JSON.parse(readFileSync(scope.path('pulled', 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
    t.same(index.manifests.map(m => m.digest), [tiny.digest], 'the seeded image, digest for digest')
    const logs = await dockerd.dockerOk(['logs', id])
    t.match(logs, `"path":"/v2/library/tiny/manifests/1"`, 'the container served it')
  })
}
