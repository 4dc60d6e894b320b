// AUTH_REGISTRIES entries with a repository prefix (issue 19.2) against the fake Docker Hub, whose
// accounts each read one organisation's private repositories: through the registry door (crossdock's
// token dance) and the MITM door (the client's dance, crossdock's credentials on its token request),
// the longest matching prefix wins, the host-only entry is the fallback, and tokens never cross.
import t, { type Test } from 'tap'
import { FakeDockerHub, HUB, AUTH, CDN } from '../../helpers/fake-docker-hub.js'
import { startApp, type StartedApp } from '../../helpers/start-app.js'
import { mitmManifest } from '../../helpers/hub-client.js'
import { UpstreamCredentials, repositoriesOf } from '../../../src/upstream/credentials.js'
import { parseAuthRegistries } from '../../../src/config/parse.js'
import { loadConfig } from '../../../src/config/index.js'

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json'

async function rig (t: Test, authRegistries: string, env: Record<string, string> = {}): Promise<{ hub: FakeDockerHub, app: StartedApp, reg: (path: string) => Promise<number> }> {
  const hub = new FakeDockerHub()
  await hub.start()
  hub.users.set('orga-bot', 'pw-a').set('orgb-bot', 'pw-b').set('team-bot', 'pw-team')
  hub.userPrefixes.set('orga-bot', ['orga']).set('orgb-bot', ['orgb']).set('team-bot', ['orga/team'])
  hub.userPrefixes.set('hubuser', ['orgc'])
  for (const repo of ['orga/app', 'orga/team/svc', 'orgb/app', 'orgc/app']) hub.addImage(repo, '1', `${repo} layer`, { private: true })
  hub.addImage('library/alpine', '3', 'alpine layer')
  const app = await startApp({ UPSTREAM_CONNECT_TO: hub.connectTo([HUB, AUTH, CDN]), AUTH_REGISTRIES: authRegistries, CACHE_MIN_FREE: '0', ...env })
  t.teardown(async () => { await app.stop(); await hub.stop() })
  const reg = async (path: string): Promise<number> => {
    const r = await fetch(`http://127.0.0.1:${app.registryPort}${path}`, { headers: { accept: ACCEPT } })
    await r.arrayBuffer()
    return r.status
  }
  return { hub, app, reg }
}

const TWO_ORGS = 'auth.docker.io/orga:orga-bot:pw-a auth.docker.io/orgb:orgb-bot:pw-b'

t.test('registry door: each organisation with its own account; one token request per identity and repository', async t => {
  const { hub, reg } = await rig(t, TWO_ORGS)
  t.equal(await reg('/v2/docker.io/orga/app/manifests/1'), 200)
  t.equal(await reg('/v2/docker.io/orgb/app/manifests/1'), 200, 'orgb with orgb\'s account (orga\'s cannot read it)')
  t.equal(await reg('/v2/docker.io/orga/app/manifests/1'), 200)
  t.equal(await reg('/v2/docker.io/orgb/app/manifests/1'), 200)
  t.same([hub.tokenRequestsBy('orga-bot'), hub.tokenRequestsBy('orgb-bot')], [1, 1], 'tokens cached per repository, one request each')
  t.equal(await reg('/v2/docker.io/orgc/app/manifests/1'), 401, 'no entry for orgc and no host entry: anonymous, refused by the hub')
  t.equal(await reg('/v2/docker.io/library/alpine/manifests/3'), 200, 'public images anonymously')
  t.equal(hub.tokenRequestsBy('refused'), 0, 'no account was offered where it does not belong')
  const orgbTokens = hub.on(HUB, undefined, '/v2/orgb/').map(h => String(h.headers.authorization ?? '')).filter(a => a !== '')
  t.ok(orgbTokens.length > 0 && orgbTokens.every(a => /^Bearer tok-\d+-orgb-bot$/.test(a)), 'only orgb\'s tokens were sent for orgb')
})

t.test('the longest prefix wins; the host-only entry is the fallback; rpardini\'s delimiters still work', async t => {
  const { hub, reg } = await rig(t, 'registry-1.docker.io;;;hubuser;;;hub-s3cret-pw###auth.docker.io/orga;;;orga-bot;;;pw-a###auth.docker.io/orga/team;;;team-bot;;;pw-team',
    { AUTH_REGISTRIES_DELIMITER: '###', AUTH_REGISTRY_DELIMITER: ';;;' })
  t.equal(await reg('/v2/docker.io/orga/team/svc/manifests/1'), 200)
  t.equal(hub.tokenRequestsBy('team-bot'), 1, 'orga/team beats orga')
  t.equal(await reg('/v2/docker.io/orga/app/manifests/1'), 200)
  t.equal(hub.tokenRequestsBy('orga-bot'), 1)
  t.equal(await reg('/v2/docker.io/orgc/app/manifests/1'), 200, 'orgc: the host-only account')
  t.equal(hub.tokenRequestsBy('hubuser'), 1)
})

t.test('proxy door: the client\'s token request gets the account its scope names', async t => {
  const { hub, app } = await rig(t, TWO_ORGS)
  const pull = async (repository: string): Promise<number> => (await mitmManifest({ proxyPort: app.proxyPort, ca: app.caPem, host: HUB, repository, tag: '1' })).status
  t.equal(await pull('orga/app'), 200)
  t.equal(await pull('orgb/app'), 200)
  t.equal(await pull('orgc/app'), 401, 'no entry: the client\'s anonymous token cannot read it')
  const tokenAuth = hub.on(AUTH, 'GET', '/token').map(h => Buffer.from(String(h.headers.authorization ?? 'Basic ').slice(6), 'base64').toString().split(':')[0])
  t.same(tokenAuth, ['orga-bot', 'orgb-bot', ''], 'Basic by scope on each token request')
  t.same([hub.tokenRequestsBy('orga-bot'), hub.tokenRequestsBy('orgb-bot'), hub.tokenRequestsBy('anon')], [1, 1, 1])
  const own = await mitmManifest({ proxyPort: app.proxyPort, ca: app.caPem, host: HUB, repository: 'library/alpine', tag: '3' })
  t.equal(own.status, 200)
})

t.test('choice rules (unit): whole segments, agreement of several scopes, families, describe()', async t => {
  const c = new UpstreamCredentials(parseAuthRegistries('AUTH_REGISTRIES', 'docker.io:hub:1 auth.docker.io/orga:a:2 registry-1.docker.io/orga/team:t:3 ghcr.io/x:g:4', ' ', ':'))
  t.equal(c.forHost(HUB, ['orga/app'])?.username, 'a', 'realm-host entry applies to the registry (one family)')
  t.equal(c.forHost(AUTH, ['orga/team/svc'])?.username, 't')
  t.equal(c.forHost(HUB, ['orga-two/app'])?.username, 'hub', 'a prefix is whole segments')
  t.equal(c.forHost(HUB, ['orga'])?.username, 'a', 'the prefix itself')
  t.equal(c.forHost(HUB, ['orga/app', 'orgb/app'])?.username, 'hub', 'scopes that disagree: the host entry')
  t.equal(c.forHost(HUB)?.username, 'hub', '/v2/: the host entry')
  t.equal(c.forHost('ghcr.io', ['y/app']), undefined, 'no host-only entry for ghcr.io')
  t.same(repositoriesOf('/token?service=registry.docker.io&scope=repository:orga/app:pull&scope=repository:orga/lib:pull,push'), ['orga/app', 'orga/lib'])
  t.same(repositoriesOf('/v2/orga/app/blobs/sha256:1'), ['orga/app'])
  t.notMatch(JSON.stringify(c.describe()), /"[1-4]"/, 'describe() has no password')
  t.throws(() => loadConfig({ AUTH_REGISTRIES: 'auth.docker.io/orga:a:1 auth.docker.io/orga:b:2' }), /two entries for auth\.docker\.io\/orga/)
  t.throws(() => loadConfig({ AUTH_REGISTRIES: 'auth.docker.io/Org_A!:a:1' }), /AUTH_REGISTRIES=.*host\/repository-prefix/)
  t.doesNotThrow(() => loadConfig({ AUTH_REGISTRIES: 'auth.docker.io:u:1 auth.docker.io/orga:a:2' }), 'host and host/prefix entries coexist')
})
