// Day one of a new docker host, as the README tells it (issue 15): the host fetches crossdock's
// setup script by crossdock's host name and pipes it to sh; the script trusts the CA (the real
// update-ca-certificates, in a private copy of the trust store) and writes the systemd drop-in (a
// temporary /etc/systemd/system, fake systemctl: test/helpers/setup-sandbox.ts). dockerd then runs
// with exactly the drop-in's environment and the trust store the script updated, and
//   - pulls a Docker Hub image through the proxy door;
//   - pushes to and pulls from crossdock's registry port by that host name (insecure-registries),
//     which must go straight to the registry door: crossdock's name is in the drop-in's NO_PROXY;
//   - still reaches another plain-HTTP registry (`other.e2e`, not in NO_PROXY) directly.
// The names resolve only for the script and for dockerd (their own /etc/hosts, bind-mounted).
import t from 'tap'
import { mkdirSync, readFileSync } from 'node:fs'
import {
  requirePrivateNetns, createScope, startDistribution, seedImage, startCrossdock, startDockerd, freePort,
  type BuiltImage, type Crossdock, type Distribution, type Dockerd, type LogLine,
} from '../helpers/e2e/index.js'
import { createSetupSandbox, type SetupSandbox } from '../helpers/setup-sandbox.js'

const HOST = '127.0.0.28' // this file's loopback address (test/e2e/README.md)
const NAME = 'cache.e2e'
const OTHER = 'other.e2e'

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'new-host')
  let tiny!: BuiltImage
  let crossdock!: Crossdock
  let box!: SetupSandbox
  let dockerd!: Dockerd
  let registry!: string
  let other!: Distribution

  t.before(async () => {
    const upstream = await startDistribution(scope, { host: HOST, name: 'upstream' })
    tiny = await seedImage(scope, upstream, 'library/tiny', '1', { seed: 'new-host', randomBytes: 256 * 1024 })
    const registryPort = await freePort(HOST)
    crossdock = await startCrossdock(scope, { host: HOST, registryPort, connectTo: { 'registry-1.docker.io:443': upstream.address } })
    registry = `${NAME}:${registryPort}`
    const root = scope.path('host')
    mkdirSync(root, { recursive: true })
    other = await startDistribution(scope, { host: HOST, name: 'other', tls: false })
    box = createSetupSandbox(root, { hosts: `127.0.0.1 localhost\n${HOST} ${NAME} ${OTHER}\n` })
  })

  t.test('the host runs the served setup script, then dockerd runs with its drop-in', async t => {
    const r = await box.run(`curl -fsS http://${NAME}:${crossdock.proxyPort}/setup/systemd | sh`)
    t.equal(r.code, 0, r.stderr)
    t.same(r.systemctl, ['cat docker.service', 'daemon-reload', 'restart docker'])
    const env = Object.fromEntries([...readFileSync(box.dropIn('docker'), 'utf8').matchAll(/^Environment="([A-Z_]+)=(.*)"$/gm)].map(m => [m[1], m[2]]))
    t.equal(env.HTTPS_PROXY, `http://${NAME}:${crossdock.proxyPort}/`)
    t.match(env.NO_PROXY, new RegExp(`(^|,)${NAME.replace('.', '\\.')},${HOST.replace(/\./g, '\\.')}(,|$)`), 'crossdock\'s name and address are in NO_PROXY')
    // The trust store the script updated is the only one dockerd gets.
    dockerd = await startDockerd(scope, {
      env: { ...env, SSL_CERT_FILE: box.bundle },
      config: { 'insecure-registries': [registry, `${OTHER}:${other.address.split(':')[1] ?? ''}`] },
      binds: [[`${box.root}/hosts`, '/etc/hosts']],
    })
  })

  t.test('docker pull through the proxy door', async t => {
    await dockerd.dockerOk(['pull', '-q', 'tiny:1'])
    t.equal((await dockerd.dockerOk(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', 'tiny:1'])).trim(), `tiny@${tiny.digest}`)
    t.ok(await crossdock.waitForLog(l => isRequest(l, 'proxy', 'GET', `/v2/library/tiny/manifests/${tiny.digest}`)), 'the manifest came through the proxy door')
  })

  t.test(`docker push to and pull from ${NAME}:<registry port> go straight to the registry door`, async t => {
    const ref = `${registry}/team/app:1`
    await dockerd.dockerOk(['tag', 'tiny:1', ref])
    const pushed = /digest: (sha256:[0-9a-f]{64})/.exec(await dockerd.dockerOk(['push', ref]))?.[1]
    t.match(pushed, /^sha256:/, 'docker push reports a digest')
    t.ok(await crossdock.waitForLog(l => isRequest(l, 'registry', 'PUT', '/v2/team/app/manifests/1') && l.status === 201), 'the manifest PUT reached the registry door')
    await dockerd.dockerOk(['rmi', ref, 'tiny:1'])
    await dockerd.dockerOk(['pull', '-q', ref])
    t.equal((await dockerd.dockerOk(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', ref])).trim(), `${registry}/team/app@${pushed ?? ''}`)
    const relayed = crossdock.logs.filter(l => l.door === 'director' && typeof l.path === 'string' && l.path.includes(NAME))
    t.same(relayed, [], 'nothing for the registry port went through the proxy door')
    t.notOk(crossdock.logs.some(l => l.msg === 'CONNECT port not allowed'), 'no refused CONNECT')
  })

  t.test(`another plain-HTTP registry (${OTHER}, not in NO_PROXY) is reached directly`, async t => {
    const ref = `${OTHER}:${other.address.split(':')[1] ?? ''}/team/other:1`
    await dockerd.dockerOk(['tag', `${registry}/team/app:1`, ref])
    const pushed = /digest: (sha256:[0-9a-f]{64})/.exec(await dockerd.dockerOk(['push', ref]))?.[1]
    t.match(pushed, /^sha256:/, 'docker push reports a digest')
    await dockerd.dockerOk(['rmi', ref])
    await dockerd.dockerOk(['pull', '-q', ref])
    const digests = JSON.parse(await dockerd.dockerOk(['image', 'inspect', '--format', '{{json .RepoDigests}}', ref])) as string[]
    t.ok(digests.includes(`${ref.replace(/:1$/, '')}@${pushed ?? ''}`), `pulled back by digest: ${digests.join(', ')}`)
    // dockerd's first attempt is HTTPS (a CONNECT, refused: not a registry crossdock serves), then
    // plain HTTP, which has no proxy: nothing else of it reaches crossdock.
    const seen = crossdock.logs.filter(l => JSON.stringify(l).includes(OTHER))
    t.ok(seen.length > 0 && seen.every(l => l.msg === 'CONNECT port not allowed'), `crossdock only refused CONNECTs: ${seen.map(l => String(l.msg)).join('; ')}`)
  })
}

function isRequest (l: LogLine, door: string, method: string, path: string): boolean {
  return l.msg === 'request' && l.door === door && l.method === method && l.path === path
}
