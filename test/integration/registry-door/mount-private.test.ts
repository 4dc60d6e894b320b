// Private images stay private through the mount bridge: a blob a logged-in client pulled through
// the proxy door is cached, but a mount from that private repository into a hosted name is not
// offered to the registry door's clients (202, an upload, nothing copied), while a public one is.
import t from 'tap'
import http from 'node:http'
import { startApp } from '../../helpers/start-app.js'
import { proxiedRequest } from '../../helpers/proxy-client.js'
import { FakeDockerHub, HUB, AUTH } from '../../helpers/fake-docker-hub.js'

const HUB_BASIC = `Basic ${Buffer.from('hubuser:hub-s3cret-pw').toString('base64')}`

t.test('a cached private blob is not mountable without credentials; a public one is', async t => {
  const hub = new FakeDockerHub()
  await hub.start()
  const app = await startApp({ UPSTREAM_CONNECT_TO: hub.connectTo() })
  t.teardown(async () => { await app.stop(); await hub.stop() })
  const viaProxy = async (host: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number, body: Buffer }> =>
    await proxiedRequest({ proxyPort: app.proxyPort, host, ca: app.caPem, path, headers })
  const token = async (repository: string, basic?: string): Promise<string> => {
    const r = await viaProxy(AUTH, `/token?service=registry.docker.io&scope=repository:${repository}:pull`, basic !== undefined ? { authorization: basic } : {})
    return `Bearer ${JSON.parse(r.body.toString()).token as string}`
  }
  const secret = hub.addImage('secret/app', '1', 'private layer', { private: true })
  const pub = hub.addImage('library/alpine', '3', 'public layer')
  t.equal((await viaProxy(HUB, `/v2/secret/app/blobs/${secret.layer}`, { authorization: await token('secret/app', HUB_BASIC) })).status, 200, 'a logged-in client cached the private layer')
  t.equal((await viaProxy(HUB, `/v2/library/alpine/blobs/${pub.layer}`, { authorization: await token('library/alpine') })).status, 200, 'an anonymous client cached the public one')

  const mount = async (digest: string, from: string): Promise<number> => await new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: app.registryPort, method: 'POST', path: `/v2/team/base/blobs/uploads/?mount=${digest}&from=${from}`, agent: false }, res => { res.resume(); resolve(res.statusCode ?? 0) })
    req.once('error', reject).end()
  })
  t.equal(await mount(secret.layer, 'docker.io/secret/app'), 202, 'private: not offered, the client must upload (and cannot read it to do so)')
  t.equal(await mount(pub.layer, 'docker.io/library/alpine'), 201, 'public: copied from the cache')
  t.ok(app.logs.some(l => l.msg === 'registry door: mount from the cache refused by the access policy' && l.repository === 'secret/app'), 'the refusal is logged')
})
