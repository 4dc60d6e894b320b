import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import http, { type IncomingMessage } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { appendFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import bcrypt from 'bcryptjs'
import { loadClientAuth, type ClientAuth, type ClientAuthOptions } from '../../../src/auth/client-auth.js'
import { ConfigError, OciError, writeOciError } from '../../../src/errors.js'
import { createLogger, createSilentLogger } from '../../../src/log.js'
import type { Authorizer } from '../../../src/registry/hosted-registry.js'

// Real `htpasswd -B` output ($2y$), as an operator would write it.
const htpasswdLine = (user: string, pass: string): string =>
  execFileSync('htpasswd', ['-Bbn', user, pass]).toString().trim() + '\n'

const basic = (user: string, pass: string): string => 'Basic ' + Buffer.from(`${user}:${pass}`).toString('base64')

function fakeReq (opts: { authorization?: string, proxyAuthorization?: string, url?: string, remote?: string }): IncomingMessage {
  const headers: Record<string, string> = {}
  if (opts.authorization !== undefined) headers.authorization = opts.authorization
  if (opts.proxyAuthorization !== undefined) headers['proxy-authorization'] = opts.proxyAuthorization
  return { headers, url: opts.url ?? '/v2/library/x/manifests/1', socket: { remoteAddress: opts.remote ?? '127.0.0.1' } } as unknown as IncomingMessage
}

interface Harness { auth: ClientAuth, compares: () => number, logs: Array<Record<string, unknown>>, clock: { now: number }, file: string }

async function setup (t: Test, opts: Partial<ClientAuthOptions> = {}, users: Array<[string, string]> = [['alice', 's3cret'], ['bob', 'hunter2']]): Promise<Harness> {
  const file = join(t.testdir(), 'htpasswd')
  writeFileSync(file, users.map(([u, p]) => htpasswdLine(u, p)).join(''))
  let count = 0
  const logs: Array<Record<string, unknown>> = []
  const clock = { now: 1_000_000 }
  const auth = await loadClientAuth({
    htpasswdFile: file,
    anonymousPull: false,
    log: createLogger({ level: 'debug', destination: { write: (s: string) => { logs.push(JSON.parse(s)) } } }),
    compare: async (p, h) => { count++; return await bcrypt.compare(p, h) },
    now: () => clock.now,
    ...opts,
  })
  if (auth === undefined) throw new Error('expected a ClientAuth')
  return { auth, compares: () => count, logs, clock, file }
}

t.test('no HTPASSWD_FILE means no access control', async t => {
  t.equal(await loadClientAuth({ anonymousPull: false, log: createSilentLogger() }), undefined)
  t.equal(await loadClientAuth({ htpasswdFile: '', anonymousPull: true, log: createSilentLogger() }), undefined)
})

t.test('checkBasic: right password, wrong password, unknown user, malformed headers', async t => {
  const { auth } = await setup(t)
  t.same(await auth.checkBasic(basic('alice', 's3cret'), '127.0.0.1'), { ok: true, user: 'alice' })
  t.same(await auth.checkBasic(basic('bob', 'hunter2'), '127.0.0.1'), { ok: true, user: 'bob' })
  t.same(await auth.checkBasic('basic ' + Buffer.from('alice:s3cret').toString('base64'), '127.0.0.1'), { ok: true, user: 'alice' }, 'scheme is case-insensitive')
  t.same(await auth.checkBasic(basic('alice', 'pass:with:colons'), '127.0.0.1'), { ok: false, reason: 'wrong password' })
  t.same(await auth.checkBasic(basic('mallory', 's3cret'), '127.0.0.1'), { ok: false, reason: 'unknown user' })
  t.same(await auth.checkBasic(undefined, '127.0.0.1'), { ok: false, reason: 'no credentials' })
  for (const bad of ['Basic', 'Bearer abc.def', 'Basic !!!notbase64', 'Basic ' + Buffer.from('nocolon').toString('base64'), 'Basic ' + Buffer.from(':pw').toString('base64')]) {
    const r = await auth.checkBasic(bad, '127.0.0.1')
    t.equal(r.ok, false, `refused: ${bad}`)
    t.notMatch(r.ok ? '' : r.reason, /^(no credentials|wrong password|unknown user)$/, `malformed reason for ${bad}`)
  }
})

t.test('registry: anonymous pull allowed, anonymous push challenged, /v2/ always challenges anonymous', async t => {
  const { auth } = await setup(t, { anonymousPull: true })
  t.same(await auth.authorizeRegistry(fakeReq({}), 'pull'), { ok: true })
  t.same(await auth.authorizeRegistry(fakeReq({ authorization: 'Basic Og==' }), 'pull'), { ok: true }, 'empty Basic credentials (skopeo) are anonymous')

  for (const [req, action] of [[fakeReq({}), 'push'], [fakeReq({ url: '/v2/' }), 'pull'], [fakeReq({ url: '/v2' }), 'pull']] as const) {
    const r = await auth.authorizeRegistry(req, action)
    t.equal(r.ok, false)
    if (r.ok) continue
    t.ok(r.error instanceof OciError)
    t.equal(r.error.code, 'UNAUTHORIZED')
    t.equal(r.error.status, 401)
    t.equal(r.error.headers['www-authenticate'], 'Basic realm="crossdock"')
  }
  t.same(await auth.authorizeRegistry(fakeReq({ url: '/v2/', authorization: basic('alice', 's3cret') }), 'pull'), { ok: true, user: 'alice' }, 'docker login: /v2/ with credentials')
  t.same(await auth.authorizeRegistry(fakeReq({ authorization: basic('alice', 's3cret') }), 'push'), { ok: true, user: 'alice' })

  const wrong = await auth.authorizeRegistry(fakeReq({ authorization: basic('alice', 'nope') }), 'pull')
  t.equal(wrong.ok, false, 'wrong credentials are refused even where anonymous would be allowed')
  if (!wrong.ok) {
    t.equal(wrong.error.code, 'UNAUTHORIZED')
    t.equal(wrong.error.headers['www-authenticate'], 'Basic realm="crossdock"')
  }
  const unknown = await auth.authorizeRegistry(fakeReq({ authorization: basic('mallory', 'nope') }), 'pull')
  if (!wrong.ok && !unknown.ok) t.equal(unknown.error.message, wrong.error.message, 'clients cannot tell an unknown user from a wrong password')
})

t.test('authorizeAccess fits the hosted registry\'s Authorizer hook: ping/catalog/delete need credentials', async t => {
  const { auth } = await setup(t, { anonymousPull: true })
  const authorize: Authorizer = auth.authorizeAccess // detached on purpose: the composition root passes it as a bare function
  await t.resolves(authorize(fakeReq({}), { action: 'pull', name: 'library/x' }))
  for (const action of ['ping', 'catalog', 'push', 'delete'] as const) {
    const err = await authorize(fakeReq({ url: '/mounted/v2/' }), { action }).catch(e => e as OciError)
    t.ok(err instanceof OciError, `${action} refused anonymously`)
    t.equal(err?.code, 'UNAUTHORIZED')
    t.equal(err?.headers['www-authenticate'], 'Basic realm="crossdock"')
    await t.resolves(authorize(fakeReq({ authorization: basic('alice', 's3cret') }), { action }), `${action} allowed with credentials`)
  }
})

t.test('registry without anonymous pull: every request needs credentials', async t => {
  const { auth } = await setup(t)
  const r = await auth.authorizeRegistry(fakeReq({}), 'pull')
  t.equal(r.ok, false)
  if (!r.ok) t.equal(r.error.status, 401)
  t.same(await auth.authorizeRegistry(fakeReq({ authorization: basic('bob', 'hunter2') }), 'pull'), { ok: true, user: 'bob' })
})

t.test('on the wire: 401 with the OCI UNAUTHORIZED body and the Basic challenge', async t => {
  const { auth } = await setup(t)
  const server = http.createServer((req, res) => {
    auth.authorizeRegistry(req, 'pull').then(r => {
      if (!r.ok) { writeOciError(res, r.error, req.method); return }
      res.end(JSON.stringify({ user: r.user }))
    }).catch(err => { res.statusCode = 500; res.end(String(err)) })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/`

  const anon = await fetch(base)
  t.equal(anon.status, 401)
  t.equal(anon.headers.get('www-authenticate'), 'Basic realm="crossdock"')
  const body = await anon.json() as { errors: Array<{ code: string }> }
  t.equal(body.errors[0].code, 'UNAUTHORIZED')

  const bad = await fetch(base, { headers: { authorization: basic('alice', 'wrong') } })
  t.equal(bad.status, 401)
  t.equal((await bad.json() as { errors: Array<{ code: string }> }).errors[0].code, 'UNAUTHORIZED')

  const good = await fetch(base, { headers: { authorization: basic('alice', 's3cret') } })
  t.equal(good.status, 200)
  t.same(await good.json(), { user: 'alice' })
})

t.test('CONNECT: Proxy-Authorization required; anonymous only to allowed authorities with anonymous pull', async t => {
  const strict = (await setup(t)).auth
  t.equal(await strict.authorizeConnect(fakeReq({ url: 'registry-1.docker.io:443', proxyAuthorization: basic('alice', 's3cret') })), undefined)
  t.match(await strict.authorizeConnect(fakeReq({ url: 'registry-1.docker.io:443' })), /proxy authentication required/)
  t.match(await strict.authorizeConnect(fakeReq({ url: 'registry-1.docker.io:443', proxyAuthorization: basic('alice', 'x') })), /invalid proxy user name or password/)
  t.match(await strict.authorizeConnect(fakeReq({ url: 'registry-1.docker.io:443', authorization: basic('alice', 's3cret') })), /required/, 'Authorization is not Proxy-Authorization')

  const open = (await setup(t, { anonymousPull: true, anonymousConnect: a => a === 'registry-1.docker.io:443' })).auth
  t.equal(await open.authorizeConnect(fakeReq({ url: 'registry-1.docker.io:443' })), undefined, 'intercepted host, anonymous')
  t.match(await open.authorizeConnect(fakeReq({ url: 'example.com:22' })), /required/, 'raw tunnels never go anonymous')
  t.match(await open.authorizeConnect(fakeReq({ url: 'registry-1.docker.io:443', proxyAuthorization: basic('alice', 'x') })), /invalid/, 'wrong credentials do not fall back to anonymous')

  const noPredicate = (await setup(t, { anonymousPull: true })).auth
  t.match(await noPredicate.authorizeConnect(fakeReq({ url: 'registry-1.docker.io:443' })), /required/, 'default: no anonymous CONNECT')
})

t.test('verified credentials are cached: bcrypt once per credential per TTL, failures never cached', async t => {
  const { auth, compares, clock } = await setup(t, { cacheTtlMs: 60_000 })
  for (let i = 0; i < 5; i++) t.same(await auth.checkBasic(basic('alice', 's3cret'), '127.0.0.1'), { ok: true, user: 'alice' })
  t.equal(compares(), 1, 'five checks, one bcrypt')

  await Promise.all(Array.from({ length: 8 }, async () => await auth.checkBasic(basic('bob', 'hunter2'), '127.0.0.1')))
  t.equal(compares(), 2, 'eight concurrent first checks share one bcrypt')

  for (let i = 0; i < 3; i++) t.equal((await auth.checkBasic(basic('alice', 'wrong'), '127.0.0.2')).ok, false)
  t.equal(compares(), 5, 'a wrong password runs bcrypt every time')

  clock.now += 60_001
  t.same(await auth.checkBasic(basic('alice', 's3cret'), '127.0.0.1'), { ok: true, user: 'alice' })
  t.equal(compares(), 6, 'after the TTL bcrypt runs again')
})

t.test('throttle: N failures from one address block it without bcrypt; other addresses unaffected', async t => {
  const { auth, compares, clock, logs } = await setup(t, { throttle: { maxFailures: 3, windowMs: 10_000, cooldownMs: 30_000 } })
  t.same(await auth.checkBasic(basic('alice', 's3cret'), '::ffff:10.0.0.9'), { ok: true, user: 'alice' })
  for (let i = 0; i < 3; i++) await auth.checkBasic(basic('alice', 'guess' + i), '::ffff:10.0.0.9')
  const before = compares()
  const blocked = await auth.checkBasic(basic('alice', 'guess9'), '10.0.0.9')
  t.equal(blocked.ok, false)
  t.match(blocked.ok ? '' : blocked.reason, /too many failed logins from 10\.0\.0\.9/)
  t.equal(compares(), before, 'no bcrypt while blocked')
  t.equal((await auth.checkBasic(basic('alice', 's3cret'), '10.0.0.9')).ok, false, 'even a cached good credential is refused while blocked')
  t.same(await auth.checkBasic(basic('alice', 's3cret'), '10.0.0.10'), { ok: true, user: 'alice' }, 'another address is not blocked')

  const reg = await auth.authorizeRegistry(fakeReq({ authorization: basic('alice', 's3cret'), remote: '10.0.0.9' }), 'pull')
  t.equal(reg.ok, false)
  if (!reg.ok) {
    t.equal(reg.error.code, 'TOOMANYREQUESTS')
    t.equal(reg.error.status, 429)
    t.equal(reg.error.headers['retry-after'], '30')
  }
  t.match(await auth.authorizeConnect(fakeReq({ url: 'h:443', proxyAuthorization: basic('alice', 's3cret'), remote: '10.0.0.9' })), /too many failed logins/)
  t.ok(logs.some(l => l.msg === 'too many failed logins; address blocked' && l.remote === '10.0.0.9'))

  clock.now += 30_001
  t.same(await auth.checkBasic(basic('alice', 's3cret'), '10.0.0.9'), { ok: true, user: 'alice' }, 'unblocked after the cool-down')
})

t.test('failures outside the window do not add up', async t => {
  const { auth, clock } = await setup(t, { throttle: { maxFailures: 3, windowMs: 10_000, cooldownMs: 30_000 } })
  for (let i = 0; i < 6; i++) {
    await auth.checkBasic(basic('alice', 'typo'), '10.1.1.1')
    clock.now += 6_000
  }
  t.same(await auth.checkBasic(basic('alice', 's3cret'), '10.1.1.1'), { ok: true, user: 'alice' })
})

t.test('failures are logged at warn with remote, user and reason, never the password', async t => {
  const { auth, logs } = await setup(t)
  await auth.checkBasic(basic('alice', 'Sup3rSecretGuess'), '192.0.2.7')
  await auth.authorizeRegistry(fakeReq({ authorization: basic('mallory', 'An0therSecret'), remote: '192.0.2.8' }), 'push')
  await auth.authorizeConnect(fakeReq({ url: 'h:443', proxyAuthorization: basic('bob', 'Th1rdSecret'), remote: '192.0.2.9' }))
  await auth.checkBasic(basic('alice', 's3cret'), '192.0.2.7')
  const failures = logs.filter(l => l.msg === 'client authentication failed')
  t.equal(failures.length, 3)
  t.match(failures[0], { level: 40, remote: '192.0.2.7', user: 'alice', reason: 'wrong password', module: 'client-auth' })
  t.match(failures[1], { level: 40, remote: '192.0.2.8', user: 'mallory', reason: 'unknown user', door: 'registry' })
  t.match(failures[2], { level: 40, remote: '192.0.2.9', user: 'bob', door: 'proxy' })
  const all = JSON.stringify(logs)
  for (const secret of ['Sup3rSecretGuess', 'An0therSecret', 'Th1rdSecret', 's3cret']) t.notOk(all.includes(secret), `no ${secret} in logs`)
  t.notOk(all.includes(Buffer.from('alice:Sup3rSecretGuess').toString('base64')), 'no encoded credentials in logs')
})

t.test('ConfigError for non-bcrypt entries and unreadable files', async t => {
  const dir = t.testdir()
  const md5 = join(dir, 'md5')
  writeFileSync(md5, htpasswdLine('alice', 'a') + '# a comment\n\n' + execFileSync('htpasswd', ['-mbn', 'bob', 'pw']).toString())
  await t.rejects(loadClientAuth({ htpasswdFile: md5, anonymousPull: false, log: createSilentLogger() }), ConfigError)
  const err = await loadClientAuth({ htpasswdFile: md5, anonymousPull: false, log: createSilentLogger() }).catch(e => e as Error)
  t.match((err as Error).message, /HTPASSWD_FILE=.*md5 line 4: user "bob" has an MD5 \(\$apr1\$\) hash; expected a bcrypt hash/)

  const missing = join(dir, 'nope')
  const err2 = await loadClientAuth({ htpasswdFile: missing, anonymousPull: false, log: createSilentLogger() }).catch(e => e as Error)
  t.ok(err2 instanceof ConfigError)
  t.match((err2 as Error).message, /HTPASSWD_FILE=.*nope: cannot read the file/)

  for (const [name, text, re] of [
    ['plain', 'carol:plaintext\n', /line 1: user "carol" has a plain-text/],
    ['sha', execFileSync('htpasswd', ['-sbn', 'dave', 'pw']).toString(), /SHA-1/],
    ['nocolon', 'justaname\n', /line 1: expected "user:bcrypt-hash"/],
    ['dup', htpasswdLine('eve', 'a') + htpasswdLine('eve', 'b'), /line 2: user "eve" appears twice/],
  ] as const) {
    const f = join(dir, name)
    writeFileSync(f, text)
    const e = await loadClientAuth({ htpasswdFile: f, anonymousPull: false, log: createSilentLogger() }).catch(x => x as Error)
    t.ok(e instanceof ConfigError, name)
    t.match((e as Error).message, re, name)
  }
})

t.test('the file is reloaded when it changes: new user works, removed user stops, bad edit keeps old users', async t => {
  const { auth, clock, file, logs } = await setup(t, { reloadCheckMs: 1000 }, [['alice', 's3cret']])
  t.same(await auth.checkBasic(basic('alice', 's3cret'), '127.0.0.1'), { ok: true, user: 'alice' })

  appendFileSync(file, htpasswdLine('frank', 'n3w'))
  clock.now += 1001
  t.same(await auth.checkBasic(basic('frank', 'n3w'), '127.0.0.1'), { ok: true, user: 'frank' }, 'added user, no restart')

  writeFileSync(file, htpasswdLine('frank', 'n3w'))
  clock.now += 1001
  t.equal((await auth.checkBasic(basic('alice', 's3cret'), '127.0.0.1')).ok, false, 'removed user is not kept alive by the cache')

  writeFileSync(file, 'frank:$apr1$broken\n')
  clock.now += 1001
  t.same(await auth.checkBasic(basic('frank', 'n3w'), '127.0.0.1'), { ok: true, user: 'frank' }, 'a bad edit keeps the previous users')
  t.ok(logs.some(l => l.level === 50 && String(l.msg).includes('reload failed')))
})
