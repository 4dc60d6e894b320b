// Issue 19.2 and 19.3 with real clients against the token-authenticated fake Docker Hub
// (test/helpers/fake-docker-hub.ts: realm auth.docker.io, 307 to a CDN; each account reads only its
// organisation's private repositories; token requests counted per identity), real images in it.
// - Two organisations, one crossdock: AUTH_REGISTRIES="auth.docker.io/orga:… auth.docker.io/orgb:…";
//   a dockerd that never logged in pulls both through the proxy door (crossdock adds the account
//   the token request's scope names); skopeo pulls orgb's through the registry door; each account
//   asked for tokens only for its own organisation.
// - A credential helper: `docker-credential-test` (a shell script this test writes into a temp dir
//   put on crossdock's PATH) hands out a password that then expires at the hub; the next pull
//   gets a 401 at the realm, crossdock runs the helper again, and the pull succeeds.
import t, { type Test } from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  requirePrivateNetns, createScope, buildImage, startCrossdock, startDockerd, skopeo,
  type BuiltImage, type Crossdock, type LogLine,
} from '../helpers/e2e/index.js'
import { FakeDockerHub, HUB, AUTH, CDN } from '../helpers/fake-docker-hub.js'
import { createFakeHelper } from '../helpers/credential-helper-script.js'

const HOST = '127.0.0.33' // this file's loopback address (test/e2e/README.md)
const ORGA = { user: 'orga-bot', password: 'orga-Pa55-e2e' }
const ORGB = { user: 'orgb-bot', password: 'orgb-Pa55-e2e' }

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'hub-credentials')
  const hub = new FakeDockerHub()
  const images: Record<string, BuiltImage> = {}

  t.before(async () => {
    await hub.start(HOST)
    scope.defer('stop the fake hub', async () => { await hub.stop() })
    hub.users.set(ORGA.user, ORGA.password).set(ORGB.user, ORGB.password).set('helper-bot', 'helper-pw-1')
    hub.userPrefixes.set(ORGA.user, ['orga']).set(ORGB.user, ['orgb']).set('helper-bot', ['orgc'])
    for (const repo of ['orga/app', 'orgb/app', 'orgc/app']) {
      const image = buildImage(scope.path('images', repo.replace('/', '_')), '1', { seed: `hub-${repo}`, randomBytes: 64 * 1024 })
      hub.addLayout(repo, '1', layoutBlobs(image), image, { private: true })
      images[repo] = image
    }
  })

  const crossdockWith = async (name: string, env: Record<string, string>): Promise<Crossdock> =>
    await startCrossdock(scope, { host: HOST, name, env: { UPSTREAM_CONNECT_TO: hub.connectTo([HUB, AUTH, CDN]), REGISTRIES: CDN, ...env } })

  t.test('two Docker Hub organisations with their own accounts through one crossdock, both doors', async t => {
    const crossdock = await crossdockWith('crossdock-orgs', { AUTH_REGISTRIES: `auth.docker.io/orga:${ORGA.user}:${ORGA.password} auth.docker.io/orgb:${ORGB.user}:${ORGB.password}` })
    const dockerd = await startDockerd(scope, { name: 'dockerd-orgs', httpsProxy: crossdock.proxyUrl, trust: [crossdock.caCert] })
    for (const repo of ['orga/app', 'orgb/app']) {
      await dockerd.dockerOk(['pull', '-q', `${repo}:1`])
      t.equal((await dockerd.dockerOk(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', `${repo}:1`])).trim(), `${repo}@${images[repo].digest}`, `${repo} pulled without docker login`)
      t.equal((await dockerd.dockerOk(['run', '--rm', '--network', 'none', `${repo}:1`])).trim(), 'hello from e2e', `${repo} runs`)
    }
    const refused = await dockerd.docker(['pull', 'orgc/app:1'])
    t.not(refused.code, 0, 'orgc has no entry: the anonymous token cannot read it')

    // The registry door: crossdock runs the token dance itself, with orgb's account for orgb.
    const orgbBefore = hub.tokenRequestsBy(ORGB.user)
    await skopeoPull(`${crossdock.registryAddress}/docker.io/orgb/app:1`, scope.path('skopeo-orgb'))
    t.equal(hub.tokenRequestsBy(ORGB.user), orgbBefore + 1, 'one token request as orgb-bot for the registry door (then cached)')

    t.ok(hub.tokenRequestsBy(ORGA.user) >= 1 && hub.tokenRequestsBy(ORGB.user) >= 2, 'each account asked for tokens')
    const tokenOwners = (repo: string): string[] => hub.on(HUB, undefined, `/v2/${repo}/`).map(h => /^Bearer tok-\d+-(.+)$/.exec(String(h.headers.authorization ?? ''))?.[1]).filter((u): u is string => u !== undefined)
    t.same([...new Set(tokenOwners('orga/app'))], [ORGA.user], 'orga/app was only ever read with orga\'s tokens')
    t.same([...new Set(tokenOwners('orgb/app'))], [ORGB.user], 'orgb/app only with orgb\'s')
    t.equal(hub.tokenRequestsBy('refused'), 0, 'no account was offered for another organisation')
    assertNoSecret(t, crossdock.logs, [ORGA.password, ORGB.password])
  })

  t.test('a credential helper whose password expires: asked again on the 401, the pull succeeds', async t => {
    const helper = await createFakeHelper('test')
    scope.defer('remove the helper', helper.remove)
    await helper.answer('helper-bot', 'helper-pw-1')
    const crossdock = await crossdockWith('crossdock-helper', { CREDENTIAL_HELPERS: 'docker.io:test', PATH: `${helper.dir}:${process.env.PATH ?? ''}` })
    const dockerd = await startDockerd(scope, { name: 'dockerd-helper', httpsProxy: crossdock.proxyUrl, trust: [crossdock.caCert] })
    await dockerd.dockerOk(['pull', '-q', 'orgc/app:1'])
    t.same(await helper.calls(), ['https://index.docker.io/v1/'], 'the helper ran once, asked for Docker Hub as docker login stores it')

    // The password expires at the hub (and the tokens issued with it); the helper has the new one.
    hub.users.set('helper-bot', 'helper-pw-2')
    hub.revokeAll()
    await helper.answer('helper-bot', 'helper-pw-2')
    await dockerd.dockerOk(['rmi', 'orgc/app:1'])
    const refusedBefore = hub.tokenRequestsBy('refused')
    await dockerd.dockerOk(['pull', '-q', 'orgc/app:1'])
    t.equal((await dockerd.dockerOk(['run', '--rm', '--network', 'none', 'orgc/app:1'])).trim(), 'hello from e2e', 'pulled again and runs')
    t.equal((await helper.calls()).length, 2, 'the helper was asked again')
    t.equal(hub.tokenRequestsBy('refused'), refusedBefore + 1, 'after exactly one refusal of the expired password')
    t.ok(await crossdock.waitForLog(l => l.module === 'credential-helper' && l.msg === 'credential helper answered'), 'crossdock logged the helper\'s answer (without it)')

    // The registry door, too: skopeo with no credentials of its own.
    hub.users.set('helper-bot', 'helper-pw-3')
    await helper.answer('helper-bot', 'helper-pw-3')
    await skopeoPull(`${crossdock.registryAddress}/docker.io/orgc/app:1`, scope.path('skopeo-orgc'))
    t.equal((await helper.calls()).length, 3, 'the registry door\'s realm refused pw-2: the helper ran again')
    assertNoSecret(t, crossdock.logs, ['helper-pw-1', 'helper-pw-2', 'helper-pw-3'])
  })

  async function skopeoPull (ref: string, dir: string): Promise<void> {
    const r = await skopeo(scope, ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${dir}:x`])
    if (r.code !== 0) throw new Error(`skopeo copy ${ref}: ${r.stderr}`)
  }
}

/** Every blob of an OCI layout, by digest. */
function layoutBlobs (image: BuiltImage): Map<string, Buffer> {
  const dir = join(image.layoutDir, 'blobs/sha256')
  return new Map(readdirSync(dir).map(f => [`sha256:${f}`, readFileSync(join(dir, f))]))
}

function assertNoSecret (t: Test, logs: LogLine[], secrets: string[]): void {
  const text = logs.map(l => JSON.stringify(l)).join('\n')
  t.notOk(secrets.some(s => text.includes(s) || text.includes(Buffer.from(s).toString('base64').slice(0, 12))), 'no credential in crossdock\'s logs')
}
