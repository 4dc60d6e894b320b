// Cached public images survive an outage; private ones stay private. When the upstream cannot answer
// the access check (down), a repository an upstream once served anonymously is still served from the
// cache — after a restart too (CACHE_DIR/public-repositories) — while an item cached for a logged-in
// client is still refused to anyone else (503: not verifiable), and served to nobody unverified.
import t from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startApp, type StartedApp } from '../../helpers/start-app.js'
import { proxiedRequest, type ProxiedResponse } from '../../helpers/proxy-client.js'
import { FakeDockerHub, HUB, AUTH, CDN } from '../../helpers/fake-docker-hub.js'

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json'
const USER_BASIC = `Basic ${Buffer.from('hubuser:hub-s3cret-pw').toString('base64')}`

/** The registry door: crossdock does the (anonymous) token dance itself. */
async function viaDoor (app: StartedApp, path: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string, cache: string | null }> {
  const r = await fetch(`http://127.0.0.1:${app.registryPort}/v2/docker.io/${path}`, { headers })
  return { status: r.status, body: await r.text(), cache: r.headers.get('x-cache-status') }
}

async function viaProxy (app: StartedApp, host: string, path: string, headers: Record<string, string> = {}): Promise<ProxiedResponse> {
  return await proxiedRequest({ proxyPort: app.proxyPort, host, ca: app.caPem, path, method: 'GET', headers })
}

t.test('upstream down (and crossdock restarted): public cached items served, private ones refused', async t => {
  const hub = new FakeDockerHub()
  await hub.start()
  const pub = hub.addImage('library/pub', '1', 'public layer')
  const priv = hub.addImage('secret/app', '1', 'private layer', { private: true })
  const dir = await mkdtemp(join(tmpdir(), 'crossdock-outage-'))
  const env = { UPSTREAM_CONNECT_TO: hub.connectTo(), REGISTRIES: CDN }
  let app: StartedApp | undefined = await startApp(env, { dir })
  t.teardown(async () => { await app?.stop(); await hub.stop(); await rm(dir, { recursive: true, force: true }) })

  // Cached while the upstream is up: the public image anonymously, the private one with a user's token.
  t.equal((await viaDoor(app, `library/pub/manifests/${pub.manifest.digest}`, { accept: ACCEPT })).status, 200)
  t.equal((await viaDoor(app, `library/pub/blobs/${pub.layer}`)).body, 'public layer')
  const tokenAnswer = await viaProxy(app, AUTH, '/token?service=registry.docker.io&scope=repository:secret/app:pull', { authorization: USER_BASIC })
  const token = `Bearer ${JSON.parse(tokenAnswer.body.toString()).token as string}`
  t.equal((await viaProxy(app, HUB, `/v2/secret/app/blobs/${priv.layer}`, { authorization: token })).body.toString(), 'private layer')
  t.match(await readFile(join(dir, 'cache', 'public-repositories'), 'utf8'), /^registry-1\.docker\.io\/library\/pub\n$/m, 'the public repository is noted beside the cache')
  t.notMatch(await readFile(join(dir, 'cache', 'public-repositories'), 'utf8'), /secret/, 'the private one is not')
  t.match(await readFile(join(dir, 'cache', 'restricted-digests'), 'utf8'), `${priv.layer}\n`, 'its layer is noted restricted')

  // The outage, and a restart during it: nothing is known in memory any more.
  await app.stop()
  app = undefined
  await hub.stop()
  app = await startApp(env, { dir })

  const blob = await viaDoor(app, `library/pub/blobs/${pub.layer}`)
  t.equal(blob.status, 200, 'the cached public layer is served with the upstream down')
  t.equal(blob.body, 'public layer')
  t.equal(blob.cache, 'HIT')
  const byDigest = await viaDoor(app, `library/pub/manifests/${pub.manifest.digest}`, { accept: ACCEPT })
  t.equal(byDigest.status, 200, 'and its manifest')
  t.ok(app.logs.some(l => l.msg === 'access check failed; served as a repository seen public before' && l.repository === 'library/pub'), 'said in the log')

  const anon = await viaProxy(app, HUB, `/v2/secret/app/blobs/${priv.layer}`)
  t.equal(anon.status, 503, 'the private layer is not served unverified')
  t.notMatch(anon.body.toString(), /private layer/)
  const sideDoor = await viaDoor(app, `library/pub/blobs/${priv.layer}`)
  t.not(sideDoor.status, 200, 'nor through the public repository')
  t.notMatch(sideDoor.body, /private layer/)
})
