import t from 'tap'
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ConfigError } from '../../../src/errors.js'
import { createSilentLogger } from '../../../src/log.js'
import { loadOrCreateCa } from '../../../src/tls/ca.js'
import { serialBytes } from './der.js'
import { writeEcCa } from './ec-ca.js'

const log = createSilentLogger()
const FIXTURES = fileURLToPath(new URL('../../fixtures/', import.meta.url))
const fixture = (name: string): string => join(FIXTURES, name)
const opensslText = (pem: string): string => execFileSync('openssl', ['x509', '-noout', '-text'], { input: pem }).toString()

t.test('first start creates an RSA-2048 root CA, 0600 key in a 0700 directory', async t => {
  const caDir = join(t.testdir(), 'nested', 'ca')
  const ca = await loadOrCreateCa({ caDir, log })
  t.equal(ca.origin, 'created')
  t.equal(statSync(caDir).mode & 0o777, 0o700)
  t.equal(statSync(join(caDir, 'ca.key')).mode & 0o777, 0o600)
  t.equal(readFileSync(join(caDir, 'ca.crt'), 'utf8'), ca.certPem)

  const cert = new X509Certificate(readFileSync(join(caDir, 'ca.crt')))
  t.ok(cert.ca, 'basicConstraints CA:TRUE')
  t.match(cert.subject, /^CN=crossdock root CA \S+/m)
  t.equal(cert.subject, cert.issuer, 'self-issued')
  t.ok(cert.verify(cert.publicKey), 'self-signed with its own key')
  t.equal(cert.publicKey.asymmetricKeyType, 'rsa')
  t.equal(cert.publicKey.asymmetricKeyDetails?.modulusLength, 2048)
  t.ok(cert.checkPrivateKey(ca.key), 'ca.key belongs to ca.crt')

  const days = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 86_400_000
  t.ok(days >= 3652 && days <= 3653, `10 years of validity (${days} days)`)
  t.ok(Date.parse(cert.validFrom) < Date.now() - 30 * 60_000, 'notBefore is back-dated for clock skew')

  const serial = serialBytes(cert.raw)
  t.ok(serial[0] > 0 && serial[0] < 0x80, 'serial is positive and minimally encoded')
  t.equal(serial.length, 16)

  const text = opensslText(ca.certPem)
  t.match(text, /X509v3 Basic Constraints: critical\s+CA:TRUE/)
  t.match(text, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign\s/)
  t.match(text, /X509v3 Subject Key Identifier:\s+[0-9A-F:]{59}/)
  t.equal(ca.keyIdentifier?.toString('hex').toUpperCase().match(/../g)?.join(':'), text.match(/Subject Key Identifier:\s+([0-9A-F:]+)/)?.[1])
})

t.test('a later start reuses the same CA and leaves the files alone', async t => {
  const caDir = t.testdir()
  const first = await loadOrCreateCa({ caDir, log })
  const before = { crt: readFileSync(join(caDir, 'ca.crt')), key: readFileSync(join(caDir, 'ca.key')) }
  const second = await loadOrCreateCa({ caDir, log })
  t.equal(second.origin, 'reused')
  t.equal(second.cert.fingerprint256, first.cert.fingerprint256)
  t.equal(second.certPem, first.certPem)
  t.same(readFileSync(join(caDir, 'ca.crt')), before.crt)
  t.same(readFileSync(join(caDir, 'ca.key')), before.key)
})

t.test('the operator\'s CA files are used, never written, and CA_DIR is not touched', async t => {
  const dir = t.testdir()
  const crt = join(dir, 'op.crt')
  const key = join(dir, 'op.key')
  copyFileSync(fixture('test-ca.crt'), crt)
  copyFileSync(fixture('test-ca.key'), key)
  const before = { crt: statSync(crt).mtimeMs, key: statSync(key).mtimeMs, keyBytes: readFileSync(key) }
  const caDir = join(dir, 'unused-ca-dir')
  const ca = await loadOrCreateCa({ caDir, caCrtFile: crt, caKeyFile: key, log })
  t.equal(ca.origin, 'operator')
  t.equal(ca.cert.fingerprint256, new X509Certificate(readFileSync(fixture('test-ca.crt'))).fingerprint256)
  t.equal(statSync(crt).mtimeMs, before.crt)
  t.equal(statSync(key).mtimeMs, before.key)
  t.same(readFileSync(key), before.keyBytes)
  t.notOk(existsSync(caDir), 'no CA was created in CA_DIR')
})

t.test('bad operator files are a ConfigError naming the file and the problem', async t => {
  const dir = t.testdir({ 'garbage.crt': 'not a certificate\n', 'garbage.key': 'not a key\n' })
  const cases: Array<[string, { caCrtFile?: string, caKeyFile?: string }, RegExp]> = [
    ['key of another CA', { caCrtFile: fixture('test-ca.crt'), caKeyFile: fixture('other-ca.key') }, /other-ca\.key: this private key does not belong to the certificate in .*test-ca\.crt/],
    ['not a CA certificate', { caCrtFile: fixture('upstream.crt'), caKeyFile: fixture('upstream.key') }, /upstream\.crt: not a CA certificate/],
    ['unparseable certificate', { caCrtFile: join(dir, 'garbage.crt'), caKeyFile: fixture('test-ca.key') }, /garbage\.crt: not a PEM or DER X\.509 certificate/],
    ['unparseable key', { caCrtFile: fixture('test-ca.crt'), caKeyFile: join(dir, 'garbage.key') }, /garbage\.key: not a PEM or DER private key/],
    ['missing file', { caCrtFile: join(dir, 'absent.crt'), caKeyFile: fixture('test-ca.key') }, /cannot read the CA certificate: .*absent\.crt: does not exist/],
    ['certificate without key', { caCrtFile: fixture('test-ca.crt') }, /CA_CRT_FILE and CA_KEY_FILE must be set together/],
  ]
  for (const [name, files, message] of cases) {
    await t.rejects(loadOrCreateCa({ caDir: join(dir, 'ca'), ...files, log }), ConfigError, name)
    await t.rejects(loadOrCreateCa({ caDir: join(dir, 'ca'), ...files, log }), { message }, name)
  }
})

t.test('an EC operator CA is accepted', async t => {
  const dir = t.testdir()
  const ca = await loadOrCreateCa({ caDir: join(dir, 'ca'), ...writeEcCa(dir), log })
  t.equal(ca.key.asymmetricKeyType, 'ec')
  t.ok(ca.keyIdentifier !== undefined && ca.keyIdentifier.length > 0, 'SKI read from a non-RSA certificate')
})

t.test('a CA certificate whose keyUsage lacks keyCertSign is refused', async t => {
  const dir = t.testdir()
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30',
    '-keyout', join(dir, 'ku.key'), '-out', join(dir, 'ku.crt'), '-subj', '/CN=crossdock test CA without keyCertSign',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,digitalSignature'], { stdio: 'ignore' })
  await t.rejects(loadOrCreateCa({ caDir: join(dir, 'ca'), caCrtFile: join(dir, 'ku.crt'), caKeyFile: join(dir, 'ku.key'), log }),
    { name: 'ConfigError', message: /ku\.crt: not a CA certificate .*keyCertSign/ })
})

t.test('half a CA in CA_DIR is refused, not silently replaced', async t => {
  const caDir = t.testdir({ 'ca.key': 'precious\n' })
  await t.rejects(loadOrCreateCa({ caDir, log }), { name: 'ConfigError', message: /ca\.key exists but .*ca\.crt does not/ })
  t.equal(readFileSync(join(caDir, 'ca.key'), 'utf8'), 'precious\n')
  t.notOk(existsSync(join(caDir, 'ca.crt')))
})

t.test('a corrupt ca.crt in CA_DIR is a ConfigError naming it', async t => {
  const caDir = t.testdir()
  await loadOrCreateCa({ caDir, log })
  writeFileSync(join(caDir, 'ca.crt'), 'truncated')
  await t.rejects(loadOrCreateCa({ caDir, log }), { name: 'ConfigError', message: /ca\.crt: not a PEM or DER X\.509 certificate/ })
})
