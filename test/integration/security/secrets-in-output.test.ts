/**
 * Issue 14, finding 6: a malformed UPSTREAM_PROXY with a password was echoed whole in the
 * configuration error (and so in journald / docker logs), and request paths were logged with their
 * query strings. Now, run as operators run it (the built CLI): configuration errors name the
 * variable and what is expected, never the secret; request log lines keep only the harmless query
 * keys (ns, n, last, digest, mount, from) on every door.
 */
import t from 'tap'
import { ensureBuilt, runCli } from '../ops/built-cli.js'
import { startApp } from '../../helpers/start-app.js'
import { FakeUpstream } from '../../helpers/fake-upstream.js'
import { proxiedRequest } from '../../helpers/proxy-client.js'

const PROXY_SECRET = 'Pr0xy-Secret-9f1'
const REGISTRY_SECRET = 'Reg1stry-Secret-77'

/** Every way a secret could show: plain, URL-encoded, base64 alone and as user:password. */
function spellings (secret: string, user?: string): string[] {
  const out = [secret, encodeURIComponent(secret), Buffer.from(secret).toString('base64')]
  if (user !== undefined) out.push(Buffer.from(`${user}:${secret}`).toString('base64'))
  return out
}

t.test('configuration errors never print a secret variable\'s value', async t => {
  await ensureBuilt()
  const cases: Array<[Record<string, string>, string, string[]]> = [
    [{ UPSTREAM_PROXY: `http://proxy-user:${PROXY_SECRET}@proxy.internal:31 28` }, 'UPSTREAM_PROXY', spellings(PROXY_SECRET, 'proxy-user')],
    [{ UPSTREAM_PROXY: `http://proxy-user:${PROXY_SECRET}@proxy.internal:99999` }, 'UPSTREAM_PROXY', spellings(PROXY_SECRET, 'proxy-user')],
    [{ UPSTREAM_PROXY: `socks5://proxy-user:${PROXY_SECRET}@proxy.internal:1080` }, 'UPSTREAM_PROXY', spellings(PROXY_SECRET, 'proxy-user')],
    [{ UPSTREAM_PROXY: `proxy-user:${PROXY_SECRET}@proxy.internal:3128` }, 'UPSTREAM_PROXY', spellings(PROXY_SECRET, 'proxy-user')],
    // A password with an @ in it: everything up to the last @ is userinfo.
    [{ UPSTREAM_PROXY: 'http://proxy-user:Pr0xy@Secret-9f1@proxy.internal:bad' }, 'UPSTREAM_PROXY', ['Pr0xy@Secret-9f1', 'Secret-9f1', 'Pr0xy%40Secret-9f1']],
    // rpardini's separators mixed up: the password lands where a host is expected.
    [{ AUTH_REGISTRIES: `ghcr.io robot ${REGISTRY_SECRET}` }, 'AUTH_REGISTRIES', spellings(REGISTRY_SECRET)],
    [{ AUTH_REGISTRIES: `${REGISTRY_SECRET}!:robot:x` }, 'AUTH_REGISTRIES', spellings(REGISTRY_SECRET)],
    [{ AUTH_REGISTRIES: `ghcr.io;robot;${REGISTRY_SECRET}`, AUTH_REGISTRY_DELIMITER: ':::' }, 'AUTH_REGISTRIES', spellings(REGISTRY_SECRET)],
  ]
  for (const [env, variable, needles] of cases) {
    for (const command of [['config', 'check'], ['serve']]) {
      const r = await runCli(command, { ...env, PROXY_PORT: '0', REGISTRY_PORT: '0', LISTEN_HOST: '127.0.0.1', CA_DIR: '/nonexistent/ca' })
      const what = `${command.join(' ')} with ${variable}=${JSON.stringify(env[variable])}`
      t.not(r.code, 0, `${what}: refused`)
      t.match(r.stderr, new RegExp(`${variable}.*expected`), `${what}: names the variable and what is expected`)
      for (const needle of needles) t.notOk(`${r.stdout}${r.stderr}`.includes(needle), `${what}: no ${needle}`)
    }
  }
})

t.test('request logs keep only harmless query keys, on every door', async t => {
  const up = new FakeUpstream()
  await up.start()
  up.addImage('team/app', 'v1', 'layer')
  const app = await startApp({ UPSTREAM_CONNECT_TO: up.connectTo(['ghcr.io']) })
  t.teardown(async () => { await app.stop(); await up.stop() })
  const secrets = ['Query-Secret-1', 'Query-Secret-2', 'Query-Secret-3', 'Query-Secret-4', 'Query-Secret-5']
  const reg = async (path: string): Promise<number> => (await fetch(`http://127.0.0.1:${app.registryPort}${path}`)).status
  t.equal(await reg(`/v2/?token=${secrets[0]}`), 200)
  t.equal(await reg(`/v2/team/app/tags/list?n=10&last=a&access_token=${secrets[1]}`), 404)
  t.equal(await reg(`/v2/team/app/manifests/v1?ns=ghcr.io&X-Amz-Signature=${secrets[2]}`), 200)
  const proxied = await proxiedRequest({ proxyPort: app.proxyPort, ca: app.caPem, host: 'ghcr.io', path: `/v2/team/app/manifests/v1?sig=${secrets[3]}&digest=sha256:0` })
  t.equal(proxied.status, 200)
  t.equal((await fetch(`http://127.0.0.1:${app.proxyPort}/healthz?password=${secrets[4]}`)).status, 200)

  const logs = JSON.stringify(app.logs)
  for (const s of secrets) t.notOk(logs.includes(s), `no ${s} in the logs`)
  const paths = app.logs.filter(l => l.msg === 'request').map(l => String(l.path))
  t.ok(paths.includes('/v2/?token=[redacted]'), 'registry door: the key stays, its value goes')
  t.ok(paths.includes('/v2/team/app/tags/list?n=10&last=a&access_token=[redacted]'), 'n and last kept')
  t.ok(paths.includes('/v2/team/app/manifests/v1?ns=ghcr.io&X-Amz-Signature=[redacted]'), 'ns kept')
  t.ok(paths.includes('/v2/team/app/manifests/v1?sig=[redacted]&digest=sha256:0'), 'proxy door: digest kept')
  t.ok(paths.includes('/healthz?password=[redacted]'), 'director')
})
