// Upstream credentials through the whole app: Basic injected on the proxy door only when the client
// sent no Authorization, a client's own Authorization untouched, the registry door's token dance,
// and private images that stay private in the shared cache. Every log line of every app started in
// this file is checked for secrets at the end.
import t, { type Test } from 'tap'
import http from 'node:http'
import { startApp, type StartedApp } from '../../helpers/start-app.js'
import { proxiedRequest, type ProxiedResponse } from '../../helpers/proxy-client.js'
import { FakeDockerHub, HUB, AUTH, CDN, BASIC } from '../../helpers/fake-docker-hub.js'

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json'
const HUB_PW = 'hub-s3cret-pw'
const BASIC_PW = 'basic-s3cret-pw'
const basicOf = (user: string, pw: string): string => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`
const HUB_BASIC = basicOf('hubuser', HUB_PW)
const REG_BASIC = basicOf('basicuser', BASIC_PW)
const allLogs: Array<Array<Record<string, unknown>>> = []
const hubs: FakeDockerHub[] = []

async function setup (t: Test, env: Record<string, string> = {}): Promise<{ hub: FakeDockerHub, app: StartedApp, req: (host: string, path: string, headers?: Record<string, string>, method?: string) => Promise<ProxiedResponse> }> {
  const hub = new FakeDockerHub()
  await hub.start()
  hubs.push(hub)
  const app = await startApp({ UPSTREAM_CONNECT_TO: hub.connectTo(), REGISTRIES: `${BASIC} ${CDN}`, ...env })
  allLogs.push(app.logs)
  t.teardown(async () => { await app.stop(); await hub.stop() })
  const req = async (host: string, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<ProxiedResponse> =>
    await proxiedRequest({ proxyPort: app.proxyPort, host, ca: app.caPem, path, method, headers })
  return { hub, app, req }
}

/** What dockerd does through the proxy: token from the realm (with `basic` if given), then Bearer. */
async function hubToken (req: Awaited<ReturnType<typeof setup>>['req'], repository: string, basic?: string): Promise<string> {
  const r = await req(AUTH, `/token?service=registry.docker.io&scope=repository:${repository}:pull`, basic !== undefined ? { authorization: basic } : {})
  if (r.status !== 200) throw new Error(`token: ${r.status}`)
  return `Bearer ${JSON.parse(r.body.toString()).token as string}`
}

async function registryGet (app: StartedApp, path: string, headers: Record<string, string> = {}): Promise<{ status: number, headers: http.IncomingHttpHeaders, body: Buffer }> {
  return await new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: app.registryPort, path, headers, agent: false }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
    }).once('error', reject)
  })
}

t.test('2. proxy door: Basic added to the token realm only when the client sent none; a client\'s own Authorization untouched', async t => {
  const { hub, req } = await setup(t, { AUTH_REGISTRIES: `${AUTH}:hubuser:${HUB_PW}` })
  const img = hub.addImage('secret/app', '1', 'private layer', { private: true })
  const token = await hubToken(req, 'secret/app')
  t.equal(hub.on(AUTH)[0].headers.authorization, HUB_BASIC, 'crossdock injected the configured Basic into the token request')
  t.match(token, /-hubuser$/, 'so the client got the account\'s token')
  const m = await req(HUB, '/v2/secret/app/manifests/1', { authorization: token, accept: ACCEPT })
  t.equal(m.status, 200, 'the private image resolves')
  const b = await req(HUB, `/v2/secret/app/blobs/${img.layer}`, { authorization: token })
  t.equal(b.body.toString(), 'private layer')
  t.ok(hub.on(HUB).every(h => h.headers.authorization === token), 'registry-1.docker.io only ever saw the client\'s Bearer')
  t.ok(hub.on(CDN).every(h => h.headers.authorization === undefined), 'the CDN saw no credentials')

  // `docker login` through the proxy: the client's own Basic reaches the realm as it was sent.
  const own = basicOf('someoneelse', 'their-pw')
  const login = await req(AUTH, '/token?account=someoneelse&service=registry.docker.io', { authorization: own })
  t.equal(login.status, 401, 'the realm judged the client\'s own credentials (wrong here)')
  t.equal(hub.on(AUTH).at(-1)?.headers.authorization, own, 'untouched, not replaced by the configured ones')
})

t.test('1+2. spelling the registry host (registry-1.docker.io) also credentials its realm', async t => {
  const { hub, req } = await setup(t, { AUTH_REGISTRIES: `${HUB}:hubuser:${HUB_PW}` })
  hub.addImage('secret/app', '1', 'p', { private: true })
  const token = await hubToken(req, 'secret/app')
  t.equal(hub.on(AUTH)[0].headers.authorization, HUB_BASIC)
  t.equal((await req(HUB, '/v2/secret/app/manifests/1', { authorization: token, accept: ACCEPT })).status, 200)
})

t.test('2. a Basic-only registry: injected when the client sent nothing; a client\'s Bearer passes untouched', async t => {
  const { hub, req } = await setup(t, { AUTH_REGISTRIES: `${BASIC}:basicuser:${BASIC_PW}` })
  hub.addImage('team/app', '1', 'x')
  t.equal((await req(BASIC, '/v2/')).status, 200, '/v2/ answers 200 with the injected credentials')
  t.equal((await req(BASIC, '/v2/team/app/manifests/1', { accept: ACCEPT })).status, 200)
  t.ok(hub.on(BASIC).every(h => h.headers.authorization === REG_BASIC))
  const theirs = await req(BASIC, '/v2/team/app/manifests/1', { accept: ACCEPT, authorization: 'Bearer client-owned' })
  t.equal(theirs.status, 401, 'the registry judged the client\'s own header')
  t.equal(hub.on(BASIC).at(-1)?.headers.authorization, 'Bearer client-owned')
})

t.test('5. a private image cached for a logged-in client is refused to others, served again to it', async t => {
  const { hub, req } = await setup(t)
  const img = hub.addImage('secret/app', '1', 'private layer', { private: true })
  const pub = hub.addImage('library/alpine', '3', 'public layer')
  const user = await hubToken(req, 'secret/app', HUB_BASIC)
  t.equal((await req(HUB, '/v2/secret/app/manifests/1', { authorization: user, accept: ACCEPT })).status, 200)
  t.equal((await req(HUB, `/v2/secret/app/blobs/${img.layer}`, { authorization: user })).status, 200)
  const anon = await hubToken(req, 'secret/app')

  for (const [what, path] of [['blob', `/v2/secret/app/blobs/${img.layer}`], ['manifest by digest', `/v2/secret/app/manifests/${img.manifest.digest}`]]) {
    const before = hub.on(HUB).length
    const refused = await req(HUB, path, { authorization: anon, accept: ACCEPT })
    t.equal(refused.status, 401, `${what}: an anonymous token is refused as the upstream refuses it`)
    t.match(String(refused.headers['www-authenticate']), /^Bearer realm="https:\/\/auth.docker.io\/token"/, 'with the upstream\'s challenge')
    t.notOk(refused.body.toString().includes('private layer'), 'no cached bytes')
    t.equal(hub.on(HUB).length - before, what === 'blob' ? 1 : 0, what === 'blob' ? 'after one upstream HEAD with the client\'s token' : 'the verdict is cached per credential and repository')
    t.equal(hub.on(HUB).at(-1)?.method, 'HEAD')
    const bare = await req(HUB, path, { accept: ACCEPT })
    t.equal(bare.status, 401, `${what}: no Authorization at all is refused too`)
  }
  const again = await req(HUB, `/v2/secret/app/blobs/${img.layer}`, { authorization: anon })
  t.equal(again.status, 401, 'the refusal is remembered')

  const before = hub.hits.length
  const hit = await req(HUB, `/v2/secret/app/blobs/${img.layer}`, { authorization: user })
  t.equal(hit.status, 200)
  t.equal(hit.headers['x-cache-status'], 'HIT', 'the logged-in client is served from the cache')
  t.equal(hub.hits.length, before, 'without asking upstream: its token fetched the blob')
  const fresh = await hubToken(req, 'secret/app', HUB_BASIC)
  const viaCheck = await req(HUB, `/v2/secret/app/manifests/${img.manifest.digest}`, { authorization: fresh, accept: ACCEPT })
  t.equal(viaCheck.status, 200, 'a new token of the same account is checked once upstream, then served')
  t.equal(viaCheck.headers['x-cache-status'], 'HIT')

  // A public repository is not a side door to a private layer someone knows the digest of.
  const pubToken = await hubToken(req, 'library/alpine')
  const side = await req(HUB, `/v2/library/alpine/blobs/${img.layer}`, { authorization: pubToken })
  t.equal(side.status, 404, 'the upstream says the blob is not in library/alpine; so does crossdock')
  // Public images fetched with someone's token stay available to everyone.
  const userPub = await hubToken(req, 'library/alpine', HUB_BASIC)
  t.equal((await req(HUB, `/v2/library/alpine/blobs/${pub.layer}`, { authorization: userPub })).headers['x-cache-status'], 'MISS')
  const open = await req(HUB, `/v2/library/alpine/blobs/${pub.layer}`, { authorization: pubToken })
  t.equal(open.status, 200)
  t.equal(open.headers['x-cache-status'], 'HIT')
})

t.test('5. a Basic registry: ENABLE_MANIFEST_CACHE tags and blobs are not served to a client without credentials', async t => {
  const { hub, req } = await setup(t, { ENABLE_MANIFEST_CACHE: 'true' })
  const img = hub.addImage('team/app', '1', 'team layer')
  t.equal((await req(BASIC, '/v2/team/app/manifests/1', { authorization: REG_BASIC, accept: ACCEPT })).status, 200)
  t.equal((await req(BASIC, `/v2/team/app/blobs/${img.layer}`, { authorization: REG_BASIC })).status, 200)
  const tag = await req(BASIC, '/v2/team/app/manifests/1', { accept: ACCEPT })
  t.equal(tag.status, 401, 'a fresh tier tag is not served anonymously')
  t.equal(tag.headers['www-authenticate'], 'Basic realm="basic-registry"')
  t.equal((await req(BASIC, `/v2/team/app/blobs/${img.layer}`)).status, 401)
  t.equal((await req(BASIC, `/v2/team/app/blobs/${img.layer}`, { authorization: basicOf('basicuser', 'wrong') })).status, 401, 'nor with wrong credentials')
  const ok = await req(BASIC, '/v2/team/app/manifests/1', { authorization: REG_BASIC, accept: ACCEPT })
  t.equal(ok.headers['x-cache-status'], 'HIT', 'the right credentials get the cached tag')
})

t.test('5. with the operator\'s credentials configured, cached content is shared (their choice)', async t => {
  const { hub, req } = await setup(t, { AUTH_REGISTRIES: `${BASIC}:basicuser:${BASIC_PW}` })
  const img = hub.addImage('team/app', '1', 'team layer')
  t.equal((await req(BASIC, `/v2/team/app/blobs/${img.layer}`)).status, 200)
  const n = hub.hits.length
  const again = await req(BASIC, `/v2/team/app/blobs/${img.layer}`)
  t.equal(again.headers['x-cache-status'], 'HIT')
  t.equal(hub.hits.length, n, 'no access check: every client of crossdock gets these credentials anyway')
})

t.test('3+5. registry door: the token dance with configured credentials; private items refused without them', async t => {
  const { hub, app } = await setup(t, { AUTH_REGISTRIES: `${AUTH}:hubuser:${HUB_PW}` })
  const img = hub.addImage('secret/app', '1', 'private layer', { private: true })
  const m = await registryGet(app, '/v2/docker.io/secret/app/manifests/1', { accept: ACCEPT, authorization: 'Basic Y3Jvc3Nkb2NrOmNsaWVudA==' })
  t.equal(m.status, 200, 'private manifest through the registry door')
  const b = await registryGet(app, `/v2/docker.io/secret/app/blobs/${img.layer}`)
  t.equal(b.body.toString(), 'private layer')
  t.equal(hub.on(AUTH, 'GET', '/token').length, 1, 'one token for the scope, reused for the blob')
  t.equal(hub.on(AUTH)[0].headers.authorization, HUB_BASIC)
  t.notOk(hub.hits.some(h => h.headers.authorization === 'Basic Y3Jvc3Nkb2NrOmNsaWVudA=='), 'the door client\'s own Authorization never went upstream')
  t.ok(hub.on(CDN).every(h => h.headers.authorization === undefined))

  const { hub: hub2, app: app2, req: req2 } = await setup(t)
  const img2 = hub2.addImage('secret/app', '1', 'private layer', { private: true })
  const user = await hubToken(req2, 'secret/app', HUB_BASIC)
  t.equal((await req2(HUB, `/v2/secret/app/blobs/${img2.layer}`, { authorization: user })).status, 200, 'cached through the proxy door by a logged-in client')
  const door = await registryGet(app2, `/v2/docker.io/secret/app/blobs/${img2.layer}`)
  t.equal(door.status, 401, 'the registry door (anonymous upstream) does not serve it')
  t.notOk(door.body.toString().includes('private layer'))
})

t.test('4. no secret in any log line of this file\'s apps', async t => {
  const secrets = [HUB_PW, BASIC_PW, HUB_BASIC.slice(6), REG_BASIC.slice(6), ...hubs.flatMap(h => [...h.tokens.keys()])]
  t.ok(secrets.length > 6, 'tokens were issued')
  const text = allLogs.flat().map(l => JSON.stringify(l)).join('\n')
  t.ok(text.length > 0)
  for (const s of secrets) t.notOk(text.includes(s), `not in the logs: ${s.slice(0, 6)}…`)
})
