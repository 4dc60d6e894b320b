// CredentialHelpers against a real helper process (a shell script on PATH): the protocol, the cache
// and its expiry (fake clock), invalidation, the "not found" answer, failures and the timeout.
import t from 'tap'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { CredentialHelpers } from '../../../src/upstream/credential-helper.js'
import { ProxyError } from '../../../src/errors.js'
import { parseCredentialHelpers } from '../../../src/config/credential-helper-entries.js'
import { loadConfig } from '../../../src/config/index.js'
import { createFakeHelper } from '../../helpers/credential-helper-script.js'

const helper = await createFakeHelper('unit')
t.teardown(helper.remove)
process.env.PATH = `${helper.dir}:${process.env.PATH ?? ''}`
const logs: string[] = []
const log = pino({ level: 'debug' }, new Writable({ write (c: Buffer, _e, cb) { logs.push(c.toString()); cb() } }))
const clock = { now: 1_000_000 }
const make = (timeoutMs = 5000): CredentialHelpers => new CredentialHelpers({ entries: parseCredentialHelpers('CREDENTIAL_HELPERS', 'docker.io:unit, ghcr.io:unit registry.internal:5000:unit gone.io:missing'), timeoutMs, cacheMs: 60_000, log, now: () => clock.now })
const entry = (h: CredentialHelpers, host: string): { host: string, helper: string } => h.entryFor([host])!

t.test('answers are used, cached until CREDENTIAL_HELPER_CACHE_TIME, asked again after invalidate', async t => {
  const h = make()
  await helper.answer('robot', 's3cret-1')
  t.notOk(h.answered(entry(h, 'ghcr.io')), 'not answered before its first run')
  t.same(await h.get(entry(h, 'ghcr.io')), { host: 'ghcr.io', username: 'robot', password: 's3cret-1', identityToken: false, helper: 'docker-credential-unit' })
  await helper.answer('robot', 's3cret-2')
  t.equal((await h.get(entry(h, 'ghcr.io')))?.password, 's3cret-1', 'cached')
  clock.now += 60_001
  t.equal((await h.get(entry(h, 'ghcr.io')))?.password, 's3cret-2', 'expired: asked again')
  await helper.answer('robot', 's3cret-3')
  h.invalidate(entry(h, 'ghcr.io'))
  t.ok(h.answered(entry(h, 'ghcr.io')), 'an invalidated answer was still a credential')
  t.equal((await h.get(entry(h, 'ghcr.io')))?.password, 's3cret-3', 'invalidated: asked again')
  const [a, b] = await Promise.all([h.get(entry(h, 'docker.io')), h.get(entry(h, 'docker.io'))])
  t.equal(a, b, 'concurrent misses share one run')
  t.same((await helper.calls()).slice(-4), ['ghcr.io', 'ghcr.io', 'ghcr.io', 'https://index.docker.io/v1/'], 'the host on stdin; Docker Hub as docker login stores it')
  t.equal(h.runsStarted, 4)
  await helper.answer('<token>', 'refresh-abc')
  t.equal((await h.get(entry(h, 'registry.internal:5000')))?.identityToken, true, '<token> is an identity token')
  t.notMatch(logs.join(''), /s3cret|refresh-abc/, 'no secret in the log')
})

t.test('failures: 502 with a one-line reason; stderr\'s first line in the log; "not found" is anonymous', async t => {
  const h = make(500)
  await helper.fail('token expired for account 1234\nsecond line with s3cret-detail\n')
  const err = await h.get(entry(h, 'ghcr.io')).catch(e => e)
  t.ok(err instanceof ProxyError)
  t.match(err, { status: 502, code: 'ERR_CREDENTIAL_HELPER', message: 'credential helper docker-credential-unit for ghcr.io failed: exit code 1' })
  const line = logs.map(l => JSON.parse(l)).find(l => l.msg === 'credential helper failed')
  t.equal(line?.stderr, 'token expired for account 1234', 'the first line of stderr only')
  t.notMatch(logs.join(''), /s3cret-detail/)

  await helper.notFound()
  t.equal(await h.get(entry(h, 'docker.io')), undefined, 'credentials not found: anonymous')
  t.notOk(h.answered(entry(h, 'docker.io')), '"not found" is no credential (access checks stay on)')

  await helper.hang()
  const hung = await h.get(entry(h, 'registry.internal:5000')).catch(e => e)
  t.match(hung, { status: 502, message: /no answer within 500 ms \(killed\)/ })

  const missing = await h.get(entry(h, 'gone.io')).catch(e => e)
  t.match(missing, { status: 502, message: 'credential helper docker-credential-missing for gone.io failed: not found on PATH' })

  await helper.heal()
  await helper.answer('', '')
  const empty = await new CredentialHelpers({ entries: [{ host: 'x.io', helper: 'unit' }], timeoutMs: 5000, cacheMs: 0, log }).get({ host: 'x.io', helper: 'unit' }).catch(e => e)
  t.match(empty, { status: 502, message: /has no Secret/ })
})

t.test('CREDENTIAL_HELPERS config: host:helper, ports kept, names restricted, errors name the variable', async t => {
  t.same(loadConfig({ CREDENTIAL_HELPERS: '123.dkr.ecr.eu-west-1.amazonaws.com:ecr-login registry.internal:5000:pass' }).credentialHelpers.entries,
    [{ host: '123.dkr.ecr.eu-west-1.amazonaws.com', helper: 'ecr-login' }, { host: 'registry.internal:5000', helper: 'pass' }])
  t.ok(loadConfig({ CREDENTIAL_HELPERS: 'ghcr.io:x' }).registries.includes('ghcr.io'), 'a helper\'s host is intercepted')
  for (const bad of ['ghcr.io', 'ghcr.io:$(rm -rf)', 'ghcr.io:../bin/sh', ':x', 'bad host:x']) {
    t.throws(() => loadConfig({ CREDENTIAL_HELPERS: bad }), /^CREDENTIAL_HELPERS="/, bad)
  }
  t.throws(() => loadConfig({ CREDENTIAL_HELPERS: 'a.io:x a.io:y' }), /one helper per host/)
  t.throws(() => loadConfig({ CREDENTIAL_HELPER_TIMEOUT: 'soon' }), /^CREDENTIAL_HELPER_TIMEOUT="soon": expected a duration/)
  t.equal(loadConfig({}).credentialHelpers.timeoutMs, 10_000)
})
