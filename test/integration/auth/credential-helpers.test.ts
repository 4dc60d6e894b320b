// CREDENTIAL_HELPERS through both doors against the fake Docker Hub, with a real helper process on
// PATH: its answer is used like an AUTH_REGISTRIES entry, cached, asked again when the hub refuses
// it (a rotated password, an expired ECR-style token), identity tokens go the OAuth2 way, and a
// failing or hanging helper is a clean 502 (OCI JSON on the registry door) with stderr in the log.
import t, { type Test } from 'tap'
import { FakeDockerHub, HUB, AUTH, CDN } from '../../helpers/fake-docker-hub.js'
import { startApp, type StartedApp } from '../../helpers/start-app.js'
import { mitmManifest } from '../../helpers/hub-client.js'
import { createFakeHelper } from '../../helpers/credential-helper-script.js'

const helper = await createFakeHelper('test')
t.teardown(helper.remove)
process.env.PATH = `${helper.dir}:${process.env.PATH ?? ''}`

async function rig (t: Test, env: Record<string, string> = {}): Promise<{ hub: FakeDockerHub, app: StartedApp, reg: (path: string) => Promise<{ status: number, body: string }>, mitm: (repository: string) => Promise<number> }> {
  const hub = new FakeDockerHub()
  await hub.start()
  hub.users.set('helper-bot', 'pw-1')
  hub.addImage('orga/private', '1', 'private layer', { private: true })
  const app = await startApp({ UPSTREAM_CONNECT_TO: hub.connectTo([HUB, AUTH, CDN]), CREDENTIAL_HELPERS: 'docker.io:test', CACHE_MIN_FREE: '0', ...env })
  t.teardown(async () => { await app.stop(); await hub.stop() })
  return {
    hub,
    app,
    reg: async path => {
      const r = await fetch(`http://127.0.0.1:${app.registryPort}${path}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
      return { status: r.status, body: await r.text() }
    },
    mitm: async repository => (await mitmManifest({ proxyPort: app.proxyPort, ca: app.caPem, host: HUB, repository, tag: '1' })).status,
  }
}

t.test('the helper\'s answer pulls private images through both doors; cached; asked again when the hub refuses it', async t => {
  await helper.heal()
  await helper.answer('helper-bot', 'pw-1')
  const { hub, app, reg, mitm } = await rig(t)
  const callsBefore = (await helper.calls()).length
  t.equal((await reg('/v2/docker.io/orga/private/manifests/1')).status, 200, 'registry door')
  t.equal(await mitm('orga/private'), 200, 'proxy door')
  t.equal((await helper.calls()).length - callsBefore, 1, 'one helper run for both: the answer is cached')
  t.equal(hub.tokenRequestsBy('helper-bot'), 2, 'the registry door\'s dance and the client\'s token request, both as helper-bot')

  // The token the helper handed out expires: the hub now wants the next one, and revokes tokens.
  hub.users.set('helper-bot', 'pw-2')
  hub.revokeAll()
  await helper.answer('helper-bot', 'pw-2')
  t.equal((await reg('/v2/docker.io/orga/private/manifests/1')).status, 200, 'registry door: refused, helper asked again, pulled')
  t.equal((await helper.calls()).length - callsBefore, 2, 'the helper ran again after the 401')
  hub.users.set('helper-bot', 'pw-3')
  await helper.answer('helper-bot', 'pw-3')
  t.equal(await mitm('orga/private'), 200, 'proxy door: the client\'s token request refused, helper asked again, resent')
  t.equal((await helper.calls()).length - callsBefore, 3)
  t.equal(hub.tokenRequestsBy('refused'), 2, 'one refusal per door, each followed by a fresh answer')
  t.notMatch(JSON.stringify(app.logs), /pw-[123]/, 'no secret in the log')
})

t.test('cache time: the helper is asked again after CREDENTIAL_HELPER_CACHE_TIME without any 401', async t => {
  await helper.heal()
  await helper.answer('helper-bot', 'pw-1')
  for (const [cacheTime, runs] of [['10m', 1], ['0s', 2]] as const) {
    const { hub, reg } = await rig(t, { CREDENTIAL_HELPER_CACHE_TIME: cacheTime })
    hub.addImage('orga/second', '1', 'second layer', { private: true })
    const before = (await helper.calls()).length
    t.equal((await reg('/v2/docker.io/orga/private/manifests/1')).status, 200)
    t.equal((await reg('/v2/docker.io/orga/second/manifests/1')).status, 200, 'another repository: another token request')
    t.equal((await helper.calls()).length - before, runs, `CREDENTIAL_HELPER_CACHE_TIME=${cacheTime}: ${runs} helper run(s) for two token requests`)
  }
})

t.test('identity tokens (<token>) take the OAuth2 refresh-token way on both doors', async t => {
  await helper.heal()
  await helper.answer('<token>', 'identity-xyz')
  const { hub, app, reg, mitm } = await rig(t)
  hub.refreshTokens.set('identity-xyz', 'helper-bot')
  t.equal((await reg('/v2/docker.io/orga/private/manifests/1')).status, 200, 'registry door')
  t.equal(await mitm('orga/private'), 200, 'proxy door: the client\'s GET became the POST')
  const posts = hub.on(AUTH, 'POST')
  t.equal(posts.length, 2)
  t.ok(posts.every(p => p.headers.authorization === undefined), 'no Basic with an identity token')
  t.notMatch(JSON.stringify(app.logs), /identity-xyz/)
})

t.test('a failing, hanging or missing helper: 502 on both doors, OCI JSON on the registry door, stderr in the log', async t => {
  await helper.fail('error getting credentials - err: exit status 255, out: `profile expired`\nsecret-ish second line\n')
  const { app, reg, mitm } = await rig(t, { CREDENTIAL_HELPER_TIMEOUT: '300ms' })
  const r = await reg('/v2/docker.io/orga/private/manifests/1')
  t.equal(r.status, 502)
  const err = JSON.parse(r.body).errors[0]
  t.match(err.message, /credential helper docker-credential-test for docker\.io failed: exit code 1/)
  t.equal(await mitm('orga/private'), 502, 'proxy door')
  const logged = app.logs.filter(l => l.msg === 'credential helper failed')
  t.ok(logged.length >= 1)
  t.equal(logged[0].stderr, 'error getting credentials - err: exit status 255, out: `profile expired`')
  t.notMatch(JSON.stringify(app.logs), /secret-ish/)

  await helper.hang()
  const hung = await reg('/v2/docker.io/orga/other/manifests/1')
  t.equal(hung.status, 502)
  t.match(JSON.parse(hung.body).errors[0].message, /no answer within 300 ms \(killed\)/)

  await helper.notFound()
  t.equal((await reg('/v2/docker.io/library/alpine/manifests/1')).status, 404, 'not found in the helper: anonymous pull (404: no such image)')
})

t.test('AUTH_REGISTRIES wins over a helper where its entry applies', async t => {
  await helper.heal()
  await helper.answer('helper-bot', 'pw-1')
  const { hub, reg } = await rig(t, { AUTH_REGISTRIES: 'auth.docker.io/orga:hubuser:hub-s3cret-pw' })
  const before = (await helper.calls()).length
  t.equal((await reg('/v2/docker.io/orga/private/manifests/1')).status, 200)
  t.equal(hub.tokenRequestsBy('hubuser'), 1)
  t.equal((await helper.calls()).length, before, 'the helper was not asked')
})
