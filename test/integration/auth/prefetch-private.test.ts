// Prefetch through the whole app keeps private images private: the blobs of a private image are
// prefetched with the credentials of the client whose manifest GET started it, and are then served
// only to clients the upstream would serve them to.
import t from 'tap'
import { startApp } from '../../helpers/start-app.js'
import { proxiedRequest, type ProxiedResponse } from '../../helpers/proxy-client.js'
import { FakeDockerHub, HUB, AUTH } from '../../helpers/fake-docker-hub.js'

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json'
const basicOf = (user: string, pw: string): string => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`

t.test('a private image\'s blobs are prefetched with the client\'s token and refused to anonymous clients', async t => {
  const hub = new FakeDockerHub()
  await hub.start()
  const app = await startApp({ UPSTREAM_CONNECT_TO: hub.connectTo(), PREFETCH_CONCURRENCY: '8' })
  t.teardown(async () => { await app.stop(); await hub.stop() })
  const req = async (host: string, path: string, headers: Record<string, string> = {}): Promise<ProxiedResponse> =>
    await proxiedRequest({ proxyPort: app.proxyPort, host, ca: app.caPem, path, headers })
  const token = async (basic?: string): Promise<string> => {
    const r = await req(AUTH, '/token?service=registry.docker.io&scope=repository:secret/app:pull', basic !== undefined ? { authorization: basic } : {})
    return `Bearer ${JSON.parse(r.body.toString()).token as string}`
  }
  const img = hub.addImage('secret/app', '1', 'private layer', { private: true })
  const user = await token(basicOf('hubuser', 'hub-s3cret-pw'))

  const m = await req(HUB, '/v2/secret/app/manifests/1', { authorization: user, accept: ACCEPT })
  t.equal(m.status, 200)
  // The prefetch registered both downloads before the manifest's response left: the client's blob
  // GETs join them (or find them cached), whichever comes first.
  for (const d of [img.config, img.layer]) {
    const b = await req(HUB, `/v2/secret/app/blobs/${d}`, { authorization: user })
    t.equal(b.status, 200)
    t.match(String(b.headers['x-cache-status']), /^(JOINED|HIT)$/, `${d.slice(0, 15)}: from the prefetch`)
  }
  const gets = hub.on(HUB, 'GET', '/blobs/')
  t.equal(gets.length, 2, 'one upstream GET per blob')
  t.ok(gets.every(h => h.headers.authorization === user), 'each carried the token of the client whose manifest GET started it')

  const anon = await token()
  for (const d of [img.config, img.layer]) {
    const refused = await req(HUB, `/v2/secret/app/blobs/${d}`, { authorization: anon })
    t.equal(refused.status, 401, 'an anonymous token is refused, as the upstream refuses it')
    t.notOk(refused.body.toString().includes('private layer'))
    t.equal((await req(HUB, `/v2/secret/app/blobs/${d}`)).status, 401, 'and no Authorization at all')
  }
  const metrics = await new Promise<string>((resolve, reject) => {
    import('node:http').then(http => http.get(`${app.proxyUrl}/metrics`, res => {
      let s = ''
      res.on('data', c => { s += String(c) }).on('end', () => resolve(s))
    }).once('error', reject), reject)
  })
  t.match(metrics, /crossdock_prefetch_blobs_total\{outcome="started"\} 2/, 'two prefetches started')
  t.match(metrics, /crossdock_prefetch_blobs_total\{outcome="joined"\} \d+/, 'joins are counted')
})
