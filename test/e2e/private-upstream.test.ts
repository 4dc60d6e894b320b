// Issue 5 acceptance: a real distribution 2.8 with htpasswd basic auth as a private upstream
// (private.test), real dockerds pulling through crossdock's proxy door.
// (a) AUTH_REGISTRIES names it: a dockerd that never ran `docker login` pulls the private image.
// (b) no AUTH_REGISTRIES: a dockerd that logged in (through the proxy) pulls it; a second dockerd
//     without credentials is refused the now cached image (by tag and by digest), while the first
//     pulls it again from the cache.
import t, { type Test } from 'tap'
import {
  requirePrivateNetns, createScope, startDistribution, seedImage, startCrossdock, startDockerd,
  type BuiltImage, type Crossdock, type Distribution, type LogLine,
} from '../helpers/e2e/index.js'

const HOST = '127.0.0.24' // this file's loopback address (test/e2e/README.md)
const REGISTRY = 'private.test'
const CREDS = { user: 'e2e-private', password: 'pr1vate-Pa55-e2e' }

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'private-upstream')
  let upstream!: Distribution
  let image!: BuiltImage

  t.before(async () => {
    upstream = await startDistribution(scope, { host: HOST, name: 'private-registry', auth: CREDS })
    image = await seedImage(scope, upstream, 'team/secret', '1', { seed: 'private', randomBytes: 256 * 1024 }, CREDS)
  })

  const crossdockFor = async (name: string, env: Record<string, string>): Promise<Crossdock> =>
    await startCrossdock(scope, { host: HOST, name, connectTo: { [`${REGISTRY}:443`]: upstream.address }, env: { REGISTRIES: REGISTRY, ...env } })

  t.test('(a) with AUTH_REGISTRIES, dockerd pulls the private image without docker login', async t => {
    const crossdock = await crossdockFor('crossdock-a', { AUTH_REGISTRIES: `${REGISTRY}:${CREDS.user}:${CREDS.password}` })
    const dockerd = await startDockerd(scope, { name: 'dockerd-a', httpsProxy: crossdock.proxyUrl, trust: [crossdock.caCert] })
    await dockerd.dockerOk(['pull', '-q', `${REGISTRY}/team/secret:1`])
    t.equal((await dockerd.dockerOk(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', `${REGISTRY}/team/secret:1`])).trim(), `${REGISTRY}/team/secret@${image.digest}`)
    const layer = image.layers[1]?.digest ?? ''
    const served = await upstream.waitForRequests('GET', `/v2/team/secret/blobs/${layer}`)
    // The registry answers 200 only with its htpasswd credentials (an anonymous GET gets 401).
    t.ok(served.some(e => e.status === 200), 'the upstream served the layer to crossdock\'s configured credentials')
    t.notOk(upstream.requests('GET', `/v2/team/secret/blobs/${layer}`).some(e => e.status === 401), 'never asked anonymously: Basic was injected up front')
    t.equal((await dockerd.dockerOk(['run', '--rm', '--network', 'none', `${REGISTRY}/team/secret:1`])).trim(), 'hello from e2e', 'the image runs')
    assertNoSecret(t, crossdock.logs)
  })

  t.test('(b) without AUTH_REGISTRIES, a logged-in dockerd pulls; one without credentials is refused the cached image', async t => {
    const crossdock = await crossdockFor('crossdock-b', {})
    const viaProxy = { httpsProxy: crossdock.proxyUrl, trust: [crossdock.caCert] }
    const alice = await startDockerd(scope, { name: 'dockerd-alice', ...viaProxy })
    const mallory = await startDockerd(scope, { name: 'dockerd-mallory', ...viaProxy })
    const ref = `${REGISTRY}/team/secret:1`
    const byDigest = `${REGISTRY}/team/secret@${image.digest}`

    const before = await mallory.docker(['pull', ref])
    t.not(before.code, 0, 'without credentials the pull fails (nothing cached yet)')

    await alice.dockerOk(['login', '-u', CREDS.user, '-p', CREDS.password, REGISTRY])
    await alice.dockerOk(['pull', '-q', ref])
    const layer = image.layers[1]?.digest ?? ''
    t.ok((await upstream.waitForRequests('GET', `/v2/team/secret/blobs/${layer}`)).some(e => e.status === 200), 'the upstream served the layer once, to alice')
    const layerGets = upstream.requests('GET', `/v2/team/secret/blobs/${layer}`).length

    for (const r of [ref, byDigest]) {
      const refused = await mallory.docker(['pull', r])
      t.not(refused.code, 0, `mallory cannot pull ${r.replace(REGISTRY, '')} from the cache`)
      t.match(refused.stderr, /unauthorized|authentication required|denied|no basic auth/i, 'because authentication is required')
    }
    const mImages = await mallory.dockerOk(['images', '-q'])
    t.equal(mImages.trim(), '', 'mallory has no image')

    await alice.dockerOk(['rmi', ref])
    await alice.dockerOk(['pull', '-q', ref])
    t.equal((await alice.dockerOk(['run', '--rm', '--network', 'none', ref])).trim(), 'hello from e2e', 'alice pulled it again and it runs')
    t.equal(upstream.requests('GET', `/v2/team/secret/blobs/${layer}`).length, layerGets, 'the second pull came from the cache')
    const hit = await crossdock.waitForLog(l => l.msg === 'request' && l.path === `/v2/team/secret/blobs/${layer}` && l.cacheStatus === 'HIT')
    t.ok(hit, 'crossdock logged the layer as a cache HIT')
    assertNoSecret(t, crossdock.logs)
  })
}

function assertNoSecret (t: Test, logs: LogLine[]): void {
  const text = logs.map(l => JSON.stringify(l)).join('\n')
  const basic = Buffer.from(`${CREDS.user}:${CREDS.password}`).toString('base64')
  t.notOk(text.includes(CREDS.password) || text.includes(basic), 'no credential in crossdock\'s logs')
}
