// PULL_ALLOW / PULL_DENY through both doors (MITM, and the registry port's prefix, proxy-prefix and
// ?ns= forms): 403 DENIED naming the rule for manifests, blobs and tags lists, nothing sent upstream,
// cached content not served either, refusals counted by rule; hosted repositories unaffected.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { startDoor, HUB, ACCEPT } from '../registry-door/fixtures/door-harness.js'
import { sha256 } from '../../helpers/fake-upstream.js'

const ENV = { PULL_ALLOW: 'docker.io/library/* ghcr.io/my-org/**', PULL_DENY: 'docker.io/library/nginx ghcr.io/my-org/secret' }

t.test('a denied repository is 403 DENIED on every spelling of both doors, and nothing reaches the upstream', async t => {
  const d = await startDoor(t, ENV)
  const nginx = d.up.addImage('library/nginx', '1', randomBytes(1000))
  const secret = d.up.addImage('my-org/secret', 'v1', randomBytes(1000))
  const tries: Array<[string, () => Promise<{ status: number, headers: Record<string, string>, body: Buffer }>, RegExp]> = [
    ['mitm manifest', async () => await d.mitm(HUB, 'GET', '/v2/library/nginx/manifests/1', { accept: ACCEPT }), /PULL_DENY rule docker\.io\/library\/nginx/],
    ['mitm blob', async () => await d.mitm(HUB, 'GET', `/v2/library/nginx/blobs/${nginx.layer}`), /PULL_DENY rule docker\.io\/library\/nginx/],
    ['mitm tags', async () => await d.mitm(HUB, 'GET', '/v2/library/nginx/tags/list'), /PULL_DENY rule/],
    ['mitm HEAD', async () => await d.mitm(HUB, 'HEAD', '/v2/library/nginx/manifests/1'), /^$/],
    ['prefix short name', async () => await d.reg('GET', '/v2/docker.io/nginx/manifests/1', { headers: { accept: ACCEPT } }), /pulling docker\.io\/library\/nginx is refused by the PULL_DENY rule docker\.io\/library\/nginx/],
    ['index.docker.io prefix', async () => await d.reg('GET', `/v2/index.docker.io/library/nginx/blobs/${nginx.config}`), /PULL_DENY rule docker\.io\/library\/nginx/],
    ['proxy-prefix', async () => await d.reg('GET', '/v2/proxy/ghcr.io/my-org/secret/manifests/v1', { headers: { accept: ACCEPT } }), /PULL_DENY rule ghcr\.io\/my-org\/secret/],
    ['?ns=', async () => await d.reg('GET', `/v2/my-org/secret/blobs/${secret.layer}?ns=ghcr.io`), /PULL_DENY rule ghcr\.io\/my-org\/secret/],
    ['?ns= tags', async () => await d.reg('GET', '/v2/my-org/secret/tags/list?ns=ghcr.io'), /PULL_DENY rule/],
    ['not in PULL_ALLOW', async () => await d.reg('GET', '/v2/quay.io/org/app/manifests/1', { headers: { accept: ACCEPT } }), /pulling quay\.io\/org\/app is refused: it matches no PULL_ALLOW rule/],
    ['not in PULL_ALLOW, mitm', async () => await d.mitm(HUB, 'GET', '/v2/someone/app/manifests/1'), /docker\.io\/someone\/app is refused: it matches no PULL_ALLOW rule/],
  ]
  for (const [name, run, reason] of tries) {
    const r = await run()
    t.equal(r.status, 403, `${name}: 403`)
    if (r.body.length === 0) continue
    const err = JSON.parse(r.body.toString()).errors[0]
    t.equal(err.code, 'DENIED', `${name}: OCI DENIED`)
    t.match(err.message, reason, `${name}: the reason names the rule`)
    t.notMatch(err.message, /\n/, 'one line')
  }
  t.equal(d.up.hits.length, 0, 'nothing was asked of the upstream')

  const metrics = (await d.reg('GET', '/metrics')).body.toString()
  t.match(metrics, /crossdock_pulls_denied_total\{registry="registry-1\.docker\.io",rule="docker\.io\/library\/nginx"\} 6/)
  t.match(metrics, /crossdock_pulls_denied_total\{registry="ghcr\.io",rule="ghcr\.io\/my-org\/secret"\} 3/)
  t.match(metrics, /crossdock_pulls_denied_total\{registry="quay\.io",rule="PULL_ALLOW"\} 1/)
  t.match(metrics, /crossdock_pulls_denied_total\{registry="registry-1\.docker\.io",rule="PULL_ALLOW"\} 1/)
  t.notMatch(metrics, /someone|org\/app/, 'no repository in a label')
})

t.test('allowed repositories pull as before on both doors; the ping and token paths are not pulls', async t => {
  const d = await startDoor(t, ENV)
  const alpine = d.up.addImage('library/alpine', '3', randomBytes(5000))
  const app = d.up.addImage('my-org/team/app', 'v1', randomBytes(5000))
  const m = await d.reg('GET', '/v2/docker.io/alpine/manifests/3', { headers: { accept: ACCEPT } })
  t.equal(m.status, 200)
  const b = await d.mitm(HUB, 'GET', `/v2/library/alpine/blobs/${alpine.layer}`)
  t.equal(b.status, 200)
  t.equal(sha256(b.body), alpine.layer)
  t.equal((await d.reg('GET', `/v2/my-org/team/app/blobs/${app.layer}?ns=ghcr.io`)).status, 200, 'ghcr.io/my-org/** covers any depth')
  t.equal((await d.mitm(HUB, 'GET', '/v2/')).status, 200, 'the ping is no pull')
})

t.test('a cached image becomes unavailable once its rule denies it (the check precedes the cache)', async t => {
  const open = await startDoor(t, {})
  const img = open.up.addImage('library/nginx', '1', randomBytes(3000))
  t.equal((await open.reg('GET', `/v2/docker.io/library/nginx/blobs/${img.layer}`)).status, 200, 'cached while allowed')
  await open.app.app.stop()
  // The same cache directory, now with the deny rule.
  const { startApp } = await import('../../helpers/start-app.js')
  const denied = await startApp({ UPSTREAM_CONNECT_TO: open.up.connectTo([HUB]), CACHE_MIN_FREE: '0', PULL_DENY: 'docker.io/nginx' }, { dir: open.app.dir })
  t.teardown(async () => { await denied.stop() })
  const before = open.up.hits.length
  const r = await fetch(`http://127.0.0.1:${denied.registryPort}/v2/docker.io/library/nginx/blobs/${img.layer}`)
  t.equal(r.status, 403)
  t.equal(((await r.json()) as any).errors[0].code, 'DENIED')
  t.equal(open.up.hits.length, before)
})

t.test('hosted repositories are not affected by the rules, whatever their names', async t => {
  const d = await startDoor(t, { PULL_ALLOW: 'ghcr.io/nothing/*', PULL_DENY: 'docker.io/**' })
  const blob = Buffer.from('hosted layer')
  const digest = sha256(blob)
  const up = await d.reg('POST', `/v2/library/nginx/blobs/uploads/?digest=${digest}`, { headers: { 'content-type': 'application/octet-stream' }, body: blob })
  t.equal(up.status, 201, 'push to a hosted name that looks like an upstream repository')
  const got = await d.reg('GET', `/v2/library/nginx/blobs/${digest}`)
  t.equal(got.status, 200)
  t.equal(got.body.toString(), 'hosted layer')
})
