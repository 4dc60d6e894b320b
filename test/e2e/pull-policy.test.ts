// Issue 19.1 with real clients: a real distribution registry stands in for Docker Hub and ghcr.io
// (UPSTREAM_CONNECT_TO); crossdock runs with PULL_ALLOW/PULL_DENY.
// - dockerd through the proxy door: `docker pull` of a denied image fails and its output carries
//   crossdock's one-line reason naming the rule; an allowed image pulls and runs; a Docker Hub name
//   that is in no PULL_ALLOW pattern is refused with that reason;
// - containerd mirror mode (`?ns=` on the registry door): the same rule refuses ctr's pull;
// - the denied repository's blobs never left the upstream; /metrics counts the refusals by rule.
import t from 'tap'
import { get } from 'node:http'
import {
  requirePrivateNetns, createScope, startDistribution, seedImage, startCrossdock, startDockerd, startContainerd,
  type BuiltImage, type Crossdock, type Distribution,
} from '../helpers/e2e/index.js'

const HOST = '127.0.0.32' // this file's loopback address (test/e2e/README.md)

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'pull-policy')
  let upstream!: Distribution
  let allowed!: BuiltImage
  let crossdock!: Crossdock

  t.before(async () => {
    upstream = await startDistribution(scope, { host: HOST, name: 'upstream' })
    allowed = await seedImage(scope, upstream, 'library/allowed', '1', { seed: 'policy-allowed', randomBytes: 64 * 1024 })
    await seedImage(scope, upstream, 'library/nginx', '1', { seed: 'policy-denied', randomBytes: 64 * 1024 })
    await seedImage(scope, upstream, 'someone/app', '1', { seed: 'policy-someone', randomBytes: 64 * 1024 })
    await seedImage(scope, upstream, 'my-org/secret', '1', { seed: 'policy-secret', randomBytes: 64 * 1024 })
    crossdock = await startCrossdock(scope, {
      host: HOST,
      connectTo: { 'registry-1.docker.io:443': upstream.address, 'ghcr.io:443': upstream.address },
      env: { PULL_ALLOW: 'docker.io/library/* ghcr.io/my-org/**', PULL_DENY: 'docker.io/library/nginx, ghcr.io/my-org/secret' },
    })
  })

  /** Requests the upstream registry saw for `repository`. */
  const asked = (repository: string): number => ['GET', 'HEAD'].reduce((n, m) => n + upstream.requests(m, new RegExp(`^/v2/${repository}/`)).length, 0)

  t.test('dockerd through the proxy door: refused with the rule in `docker pull`\'s output; allowed images pull and run', async t => {
    const dockerd = await startDockerd(scope, { name: 'dockerd', httpsProxy: crossdock.proxyUrl, trust: [crossdock.caCert] })
    const seeded = asked('library/nginx') // skopeo's pushes while seeding
    const denied = await dockerd.docker(['pull', 'nginx:1'])
    t.not(denied.code, 0, 'docker pull nginx:1 fails')
    t.comment(`docker pull nginx:1 said: ${denied.stderr.trim()}`)
    t.match(denied.stderr, /denied: crossdock: pulling docker\.io\/library\/nginx is refused by the PULL_DENY rule docker\.io\/library\/nginx/, 'the reason and the rule are in docker\'s output')

    const unlisted = await dockerd.docker(['pull', 'someone/app:1'])
    t.not(unlisted.code, 0)
    t.match(unlisted.stderr, /pulling docker\.io\/someone\/app is refused: it matches no PULL_ALLOW rule/, 'not in PULL_ALLOW: said so')

    await dockerd.dockerOk(['pull', '-q', 'allowed:1'])
    t.equal((await dockerd.dockerOk(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', 'allowed:1'])).trim(), `allowed@${allowed.digest}`)
    t.equal((await dockerd.dockerOk(['run', '--rm', '--network', 'none', 'allowed:1'])).trim(), 'hello from e2e', 'the allowed image runs')
    t.equal(asked('library/nginx'), seeded, 'nothing of the denied image was asked of the upstream')
  })

  t.test('containerd mirror mode (?ns= on the registry door): refused by the same rule', async t => {
    const setup = await httpGet(`${crossdock.proxyUrl}/setup/containerd`)
    const ctd = await startContainerd(scope, 'containerd')
    const hostsDir = ctd.writeHostsDir({ _default: setup.body })
    const seeded = asked('my-org/secret')
    const refused = await ctd.ctr(['images', 'pull', '--hosts-dir', hostsDir, 'ghcr.io/my-org/secret:1'])
    t.not(refused.code, 0, 'ctr pull fails')
    t.match(refused.stderr, /403|denied|forbidden/i, 'ctr reports the refusal')
    const line = await crossdock.waitForLog(l => l.msg === 'request' && l.door === 'registry' && String(l.path).startsWith('/v2/my-org/secret/') && l.status === 403)
    t.ok(line, 'crossdock answered the ?ns=ghcr.io request 403')
    t.equal(asked('my-org/secret'), seeded, 'nothing asked of the upstream')
    await ctd.ctrOk(['images', 'pull', '--hosts-dir', hostsDir, 'docker.io/library/allowed:1'])
  })

  t.test('/metrics counts refusals by registry and rule', async t => {
    const metrics = (await httpGet(`${crossdock.proxyUrl}/metrics`)).body
    t.match(metrics, /crossdock_pulls_denied_total\{registry="registry-1\.docker\.io",rule="docker\.io\/library\/nginx"\} [1-9]/)
    t.match(metrics, /crossdock_pulls_denied_total\{registry="registry-1\.docker\.io",rule="PULL_ALLOW"\} [1-9]/)
    t.match(metrics, /crossdock_pulls_denied_total\{registry="ghcr\.io",rule="ghcr\.io\/my-org\/secret"\} [1-9]/)
  })
}

async function httpGet (url: string): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    get(url, res => {
      let body = ''
      res.on('data', (c: Buffer) => { body += c.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    }).on('error', reject)
  })
}
