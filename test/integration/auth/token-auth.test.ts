// AuthenticatingUpstream against a fake Docker Hub (token realm, scopes, expiry, CDN redirect) and a
// Basic-only registry, over the real UpstreamClient: what reached each host, how often, with what.
import t, { type Test } from 'tap'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { Dialer } from '../../../src/upstream/dialer.js'
import { UpstreamClient } from '../../../src/upstream/upstream-client.js'
import { UpstreamCredentials } from '../../../src/upstream/credentials.js'
import { AuthenticatingUpstream, scopeFromPath } from '../../../src/upstream/token-auth.js'
import { parseConnectTo } from '../../../src/config/parse.js'
import { TEST_CA_FILE } from '../../helpers/fake-upstream.js'
import { FakeDockerHub, HUB, AUTH, CDN, BASIC } from '../../helpers/fake-docker-hub.js'

interface Rig { hub: FakeDockerHub, auth: AuthenticatingUpstream, clock: { now: number }, logs: string[], get: (host: string, path: string, headers?: Record<string, string>, method?: string) => Promise<{ status: number, body: string, url: string }> }

async function rig (t: Test, creds: Array<{ host: string, username: string, password: string }> = []): Promise<Rig> {
  const hub = new FakeDockerHub()
  await hub.start()
  const upstream = new UpstreamClient({ dialer: new Dialer({ connectTo: parseConnectTo('X', hub.connectTo([HUB, AUTH, CDN, BASIC, 'quay.io'])), disableIpv6: false, connectTimeoutMs: 5000 }), verifySsl: true, upstreamCaFile: TEST_CA_FILE, connectTimeoutMs: 5000, readTimeoutMs: 5000 })
  t.teardown(async () => { await upstream.close(); await hub.stop() })
  const logs: string[] = []
  const log = pino({ level: 'debug' }, new Writable({ write (c: Buffer, _e, cb) { logs.push(c.toString()); cb() } }))
  const clock = { now: Date.now() }
  const auth = new AuthenticatingUpstream({ upstream, credentials: new UpstreamCredentials(creds), log, now: () => clock.now })
  const get = async (host: string, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number, body: string, url: string }> => {
    const a = await auth.request({ host, method, path, headers, followRedirects: true })
    const chunks: Buffer[] = []
    for await (const c of a.body) chunks.push(c as Buffer)
    return { status: a.status, body: Buffer.concat(chunks).toString(), url: a.url }
  }
  return { hub, auth, clock, logs, get }
}

t.test('3. challenge → anonymous token → retry; the token is cached per (host, scope) and reused', async t => {
  const { hub, get } = await rig(t)
  const img = hub.addImage('library/alpine', '3', 'alpine layer')
  hub.addImage('library/busybox', '1', 'busybox layer')
  t.equal((await get(HUB, '/v2/library/alpine/manifests/3')).status, 200)
  const tokenHits = hub.on(AUTH, 'GET', '/token')
  t.equal(tokenHits.length, 1, 'one token fetch')
  t.equal(tokenHits[0].headers.authorization, undefined, 'anonymous: no credentials configured')
  t.match(tokenHits[0].path, /service=registry.docker.io/)
  t.match(decodeURIComponent(tokenHits[0].path), /scope=repository:library\/alpine:pull/)
  const registryHits = hub.on(HUB)
  t.equal(registryHits.length, 2, 'a 401, then the retry')
  t.equal(registryHits[0].headers.authorization, undefined, 'first try carries nothing')
  t.match(String(registryHits[1].headers.authorization), /^Bearer tok-1-anon$/)

  const blob = await get(HUB, `/v2/library/alpine/blobs/${img.layer}`)
  t.equal(blob.status, 200)
  t.equal(blob.body, 'alpine layer', 'the 307 to the CDN was followed')
  t.equal(hub.on(AUTH).length, 1, 'same scope: the cached token was reused')
  t.equal(hub.on(HUB, 'GET', '/blobs/')[0].headers.authorization, 'Bearer tok-1-anon', 'sent up front, no 401 first')
  t.equal(hub.on(CDN)[0].headers.authorization, undefined, 'nothing to the CDN host')

  t.equal((await get(HUB, '/v2/library/busybox/manifests/1')).status, 200)
  t.equal(hub.on(AUTH).length, 2, 'another repository is another scope: a second token')
  t.equal(scopeFromPath('/v2/a/b/c/blobs/sha256:x'), 'repository:a/b/c:pull')
  t.equal(scopeFromPath('/v2/'), undefined)
})

t.test('3. tokens expire 60 s early; expires_in defaults to 60 s; access_token is understood', async t => {
  const { hub, clock, get } = await rig(t)
  hub.addImage('library/alpine', '3', 'x')
  hub.expiresIn = 300
  await get(HUB, '/v2/library/alpine/manifests/3')
  clock.now += 239_000
  await get(HUB, '/v2/library/alpine/manifests/3')
  t.equal(hub.on(AUTH).length, 1, 'at 239 s of 300 the token is still used')
  clock.now += 2_000
  await get(HUB, '/v2/library/alpine/manifests/3')
  t.equal(hub.on(AUTH).length, 2, 'at 241 s (within 60 s of expiry) a new one is fetched')

  hub.omitExpiry = true
  hub.tokenField = 'access_token'
  const before = hub.on(AUTH).length
  clock.now += 600_000
  t.equal((await get(HUB, '/v2/library/alpine/manifests/3')).status, 200, 'access_token works')
  t.equal((await get(HUB, '/v2/library/alpine/manifests/3')).status, 200)
  t.equal(hub.on(AUTH).length, before + 2, 'a 60 s token (the default) is not worth caching with a 60 s margin')
})

t.test('3. a 401 with a cached token refreshes once, then fails clearly', async t => {
  const { hub, auth, logs, get } = await rig(t)
  hub.addImage('library/alpine', '3', 'x')
  await get(HUB, '/v2/library/alpine/manifests/3')
  hub.revokeAll()
  t.equal((await get(HUB, '/v2/library/alpine/manifests/3')).status, 200, 'refreshed after the revoked token was refused')
  t.equal(hub.on(AUTH).length, 2)
  t.equal(auth.cachedTokens, 1)

  // A repository the anonymous token can never read: one fetch, one retry, the 401 comes back.
  hub.addImage('secret/app', '1', 'private', { private: true })
  const before = { auth: hub.on(AUTH).length, hub: hub.on(HUB).length }
  const r = await get(HUB, '/v2/secret/app/manifests/1')
  t.equal(r.status, 401, 'the upstream\'s 401 is returned')
  t.equal(hub.on(AUTH).length - before.auth, 1, 'exactly one token fetch')
  t.equal(hub.on(HUB).length - before.hub, 2, 'exactly one retry')
  t.ok(logs.some(l => l.includes('upstream refused freshly obtained credentials')), 'a warning says so')
})

t.test('3. concurrent requests share one token fetch; the caller\'s Authorization is never forwarded', async t => {
  const { hub, get } = await rig(t)
  hub.addImage('library/alpine', '3', 'x')
  const all = await Promise.all(Array.from({ length: 6 }, async () => await get(HUB, '/v2/library/alpine/manifests/3', { authorization: 'Basic Y3Jvc3Nkb2NrOnVzZXI=' })))
  t.ok(all.every(r => r.status === 200))
  t.equal(hub.on(AUTH).length, 1, 'single-flight token fetch')
  t.notOk(hub.hits.some(h => h.headers.authorization === 'Basic Y3Jvc3Nkb2NrOnVzZXI='), 'a client\'s crossdock credentials never go upstream')
})

for (const spelling of [AUTH, HUB]) {
  t.test(`1+4. credentials configured as ${spelling}: Basic only to the realm; private repository readable`, async t => {
    const { hub, get, logs } = await rig(t, [{ host: spelling, username: 'hubuser', password: 'hub-s3cret-pw' }])
    const img = hub.addImage('secret/app', '1', 'private layer', { private: true })
    t.equal((await get(HUB, '/v2/secret/app/manifests/1')).status, 200)
    t.equal((await get(HUB, `/v2/secret/app/blobs/${img.layer}`)).body, 'private layer')
    const basic = `Basic ${Buffer.from('hubuser:hub-s3cret-pw').toString('base64')}`
    t.equal(hub.on(AUTH)[0].headers.authorization, basic, 'the token request carried the credentials')
    t.notOk(hub.on(HUB).some(h => h.headers.authorization === basic), 'never to the registry host')
    t.notOk(hub.on(CDN).some(h => h.headers.authorization !== undefined), 'never to the CDN')
    t.notOk(logs.join('').includes('hub-s3cret-pw') || logs.join('').includes(basic.slice(6)) || logs.join('').includes('tok-'), 'no secret or token in the logs')
  })
}

t.test('4. a realm on a foreign domain gets no credentials (the token is asked for anonymously)', async t => {
  const { hub, get } = await rig(t, [{ host: HUB, username: 'hubuser', password: 'hub-s3cret-pw' }])
  hub.realm = 'https://quay.io/token'
  hub.addImage('library/alpine', '3', 'x')
  t.equal((await get(HUB, '/v2/library/alpine/manifests/3')).status, 200)
  const asked = hub.on('quay.io')
  t.equal(asked.length, 1)
  t.equal(asked[0].headers.authorization, undefined, 'no Basic to quay.io, a foreign domain')
})

t.test('3. a Basic-only registry: the configured credentials after its challenge, then up front', async t => {
  const { hub, get } = await rig(t, [{ host: BASIC, username: 'basicuser', password: 'basic-s3cret-pw' }])
  hub.addImage('team/app', '1', 'x')
  t.equal((await get(BASIC, '/v2/team/app/manifests/1')).status, 200)
  t.equal((await get(BASIC, '/v2/team/app/manifests/1')).status, 200)
  const hits = hub.on(BASIC)
  t.equal(hits.length, 3, '401, retry with Basic, then Basic up front')
  t.same(hits.map(h => h.headers.authorization !== undefined), [false, true, true])
  const { hub: hub2, get: get2 } = await rig(t)
  hub2.addImage('team/app', '1', 'x')
  t.equal((await get2(BASIC, '/v2/team/app/manifests/1')).status, 401, 'without credentials the 401 is returned as is')
})
