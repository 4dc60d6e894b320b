// /setup/containerd on the proxy door and on the registry port: the hosts.toml for containerd's
// mirror mode, pointing at the registry port under the name the client used, with where it goes.
import t from 'tap'
import { request } from 'undici'
import { startDoor } from './fixtures/door-harness.js'

async function get (port: number, path: string, host: string): Promise<{ status: number, type: string, body: string }> {
  const r = await request(`http://127.0.0.1:${port}${path}`, { headers: { host } })
  return { status: r.statusCode, type: String(r.headers['content-type']), body: await r.body.text() }
}

t.test('the _default hosts.toml and per-host variants, on both doors', async t => {
  const d = await startDoor(t)
  const mirror = `http://cache.internal:${d.app.registryPort}`
  for (const [door, port, host] of [['proxy', d.app.proxyPort, `cache.internal:${d.app.proxyPort}`], ['registry', d.app.registryPort, `cache.internal:${d.app.registryPort}`]] as const) {
    const r = await get(port, '/setup/containerd', host)
    t.equal(r.status, 200, `${door} door: 200`)
    t.match(r.type, /^application\/toml/)
    t.match(r.body, /Install as \/etc\/containerd\/certs\.d\/_default\/hosts\.toml/, 'says where it goes')
    t.match(r.body, /config_path = "\/etc\/containerd\/certs\.d"/, 'and what containerd needs to read it')
    t.match(r.body, new RegExp(`\\n\\[host\\."${mirror}"\\]\\n  capabilities = \\["pull", "resolve"\\]\\n`), `${door} door: the registry port under the client's name`)
    t.notMatch(r.body, /^server = /m, '_default has no fallback server')
  }
  const hub = await get(d.app.proxyPort, '/setup/containerd?host=docker.io', 'cache.internal')
  t.match(hub.body, /certs\.d\/docker\.io\/hosts\.toml/)
  t.match(hub.body, /^server = "https:\/\/registry-1\.docker\.io"$/m, 'Docker Hub\'s real endpoint as the fallback')
  t.match(hub.body, new RegExp(`^\\[host\\."${mirror}"\\]$`, 'm'))
  const ghcr = await get(d.app.proxyPort, '/setup/containerd?host=ghcr.io', 'cache.internal')
  t.match(ghcr.body, /^server = "https:\/\/ghcr\.io"$/m)
  const bad = await get(d.app.proxyPort, '/setup/containerd?host=%22%5D%0Aevil', 'cache.internal')
  t.equal(bad.status, 400, 'a host that could break out of the TOML string is refused')
  t.equal(d.up.hits.length, 0)
})
