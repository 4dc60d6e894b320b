import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer as createNetServer, type AddressInfo, type Server } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { connect, TLSSocket, type ConnectionOptions, type SecureContext } from 'node:tls'
import { ProxyError } from '../../../src/errors.js'
import { createSilentLogger } from '../../../src/log.js'
import { loadOrCreateCa, type CertificateAuthority } from '../../../src/tls/ca.js'
import { LeafCertMinter } from '../../../src/tls/leaf-certs.js'
import { serialBytes } from './der.js'
import { writeEcCa } from './ec-ca.js'

const log = createSilentLogger()
const FIXTURES = fileURLToPath(new URL('../../fixtures/', import.meta.url))
const opensslText = (pem: string): string => execFileSync('openssl', ['x509', '-noout', '-text'], { input: pem }).toString()
const DAY_MS = 86_400_000

let ca: CertificateAuthority
let minter: LeafCertMinter
let dir: string

t.before(async () => {
  dir = t.testdir()
  ca = await loadOrCreateCa({ caDir: join(dir, 'ca'), log })
  minter = new LeafCertMinter(ca)
  await minter.init()
})

/** `openssl verify -purpose sslserver`, the check a TLS client makes of chain, EKU and key usage. */
function opensslVerify (caCrtFile: string, leafPem: string): string {
  const leafFile = join(dir, `leaf-${Math.random().toString(36).slice(2)}.crt`)
  writeFileSync(leafFile, leafPem)
  const r = spawnSync('openssl', ['verify', '-purpose', 'sslserver', '-CAfile', caCrtFile, leafFile])
  return `${r.stdout.toString()}${r.stderr.toString()}`.trim()
}

/**
 * A TLS server on 127.0.0.1:0 presenting what `contextFor(sni)` returns, as the proxy door will.
 * Clients send no SNI for an IP literal; then `defaultContext` (what the door minted for the
 * CONNECT host) is presented.
 */
async function tlsServer (
  t: { teardown: (fn: () => void) => void },
  contextFor: (sni: string) => Promise<SecureContext>,
  defaultContext?: SecureContext,
): Promise<number> {
  const server: Server = createNetServer(sock => {
    // Mirrors the CONNECT path: a server-side TLSSocket over a socket we already hold.
    const tls = new TLSSocket(sock, {
      isServer: true,
      secureContext: defaultContext,
      SNICallback: (name, cb) => { contextFor(name).then(ctx => cb(null, ctx), cb) },
    })
    tls.on('error', () => sock.destroy())
    tls.on('secure', () => tls.end('hello\n'))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  return (server.address() as AddressInfo).port
}

/** Connects, and resolves with the verified peer certificate or rejects with the client's TLS error. */
async function handshake (opts: ConnectionOptions): Promise<{ authorized: boolean, body: string }> {
  return await new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', ...opts })
    let body = ''
    sock.on('data', d => { body += d.toString() })
    sock.on('end', () => { resolve({ authorized: sock.authorized, body }); sock.destroy() })
    sock.on('error', reject)
  })
}

t.test('a DNS leaf has the fields clients check', async t => {
  const pem = await minter.certPemFor('registry-1.docker.io')
  const leaf = new X509Certificate(pem)
  t.equal(leaf.subject, 'CN=registry-1.docker.io')
  t.equal(leaf.subjectAltName, 'DNS:registry-1.docker.io')
  t.equal(leaf.issuer, ca.cert.subject)
  t.notOk(leaf.ca)
  t.ok(leaf.checkIssued(ca.cert), 'issued by our CA')
  t.ok(leaf.verify(ca.cert.publicKey), 'signature verifies with the CA key')
  t.same(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'serverAuth EKU only')

  const notBefore = Date.parse(leaf.validFrom)
  const notAfter = Date.parse(leaf.validTo)
  t.ok(notBefore <= Date.now() - 55 * 60_000, 'notBefore is back-dated ~1 h for clock skew')
  t.ok(notBefore >= Date.now() - 65 * 60_000, 'but by no more than ~1 h')
  t.ok(notAfter - notBefore <= 397 * DAY_MS, `validity ≤ 397 days (${(notAfter - notBefore) / DAY_MS})`)
  t.ok(notAfter - notBefore > 300 * DAY_MS, 'and not needlessly short')

  const text = opensslText(pem)
  t.match(text, /X509v3 Basic Constraints: critical\s+CA:FALSE/)
  t.match(text, /X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment\s/)
  t.match(text, /X509v3 Extended Key Usage:\s+TLS Web Server Authentication\s/)
  t.match(text, /X509v3 Subject Key Identifier:\s+[0-9A-F:]{59}/)
  t.match(text, /Signature Algorithm: sha256WithRSAEncryption/)
  const aki = text.match(/X509v3 Authority Key Identifier:\s+(?:keyid:)?([0-9A-F:]+)/)?.[1]
  const caSki = opensslText(ca.certPem).match(/X509v3 Subject Key Identifier:\s+([0-9A-F:]+)/)?.[1]
  t.ok(caSki !== undefined)
  t.equal(aki, caSki, 'AKI is the CA\'s SKI')
  t.match(opensslVerify(join(dir, 'ca', 'ca.crt'), pem), /: OK$/, 'openssl verify -purpose sslserver')
})

t.test('openssl rejects the leaf against another CA', async t => {
  const out = opensslVerify(join(FIXTURES, 'other-ca.crt'), await minter.certPemFor('registry-1.docker.io'))
  t.notMatch(out, /: OK$/)
  t.match(out, /unable to get local issuer certificate/)
})

t.test('serials are positive, minimal and unique over 200 mints', async t => {
  const seen = new Set<string>()
  let bad = 0
  for (let i = 0; i < 200; i++) {
    const serial = serialBytes(new X509Certificate(await minter.certPemFor(`serial-${i}.test`)).raw)
    // A first byte ≥ 0x80 is a negative INTEGER (Go rejects it); 0x00 first would be non-minimal.
    if (!(serial[0] > 0 && serial[0] < 0x80 && serial.length === 16)) bad++
    seen.add(serial.toString('hex'))
  }
  t.equal(bad, 0, 'no negative, zero-led or short serial')
  t.equal(seen.size, 200, 'all distinct')
})

t.test('a real handshake succeeds with our CA and fails with another', async t => {
  const port = await tlsServer(t, async sni => await minter.secureContextFor(sni))
  const ok = await handshake({ port, servername: 'registry.test', ca: ca.certPem })
  t.equal(ok.authorized, true)
  t.equal(ok.body, 'hello\n')

  await t.rejects(handshake({ port, servername: 'registry.test', ca: readFileSync(join(FIXTURES, 'other-ca.crt')) }),
    { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })
})

t.test('an IP literal gets an IP SAN that default hostname checking accepts', async t => {
  const pem = await minter.certPemFor('127.0.0.1')
  const leaf = new X509Certificate(pem)
  t.equal(leaf.subjectAltName, 'IP Address:127.0.0.1')
  t.equal(leaf.checkIP('127.0.0.1'), '127.0.0.1')

  // No SNI is sent for an IP literal, so the server presents the context for the CONNECT host.
  const port = await tlsServer(t, async sni => await minter.secureContextFor(sni), await minter.secureContextFor('127.0.0.1'))
  const ok = await handshake({ port, ca: ca.certPem })
  t.equal(ok.authorized, true)
  // The same server presenting a DNS leaf must fail the default identity check for 127.0.0.1.
  const wrong = await tlsServer(t, async sni => await minter.secureContextFor(sni), await minter.secureContextFor('not-an-ip.test'))
  await t.rejects(handshake({ port: wrong, ca: ca.certPem }), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' })
})

t.test('IPv6 literals, bracketed or not, get a 16-byte IP SAN', async t => {
  const v6 = new X509Certificate(await minter.certPemFor('[::1]'))
  t.equal(v6.subjectAltName, 'IP Address:0:0:0:0:0:0:0:1')
  const mapped = new X509Certificate(await minter.certPemFor('::ffff:10.1.2.3'))
  t.equal(mapped.subjectAltName, 'IP Address:0:0:0:0:0:FFFF:A01:203')
  const full = new X509Certificate(await minter.certPemFor('2001:db8:0:1::2:3'))
  t.equal(full.subjectAltName, 'IP Address:2001:DB8:0:1:0:0:2:3')
})

t.test('concurrent first calls for one host mint once', async t => {
  const m = new LeafCertMinter(ca)
  await m.init()
  t.equal(m.minted, 0, 'the start-up self-test is not counted')
  const contexts = await Promise.all(Array.from({ length: 20 }, async () => await m.secureContextFor('same.host')))
  t.equal(m.minted, 1)
  t.ok(contexts.every(c => c === contexts[0]), 'all callers got the same context')
  t.equal(await m.secureContextFor('same.host'), contexts[0], 'later calls hit the cache')
  t.equal(await m.secureContextFor('SAME.Host.'), contexts[0], 'case and a root dot do not make a new host')
  t.equal(m.minted, 1)
  await m.secureContextFor('other.host')
  t.equal(m.minted, 2)
})

t.test('the LRU is bounded by max', async t => {
  const m = new LeafCertMinter(ca, { max: 2 })
  await m.init()
  for (const h of ['a.test', 'b.test', 'c.test', 'a.test']) await m.secureContextFor(h)
  t.equal(m.size, 2)
  t.equal(m.minted, 4, 'a.test was evicted and minted again')
})

t.test('a name longer than 64 characters keeps the full SAN and a truncated CN', async t => {
  const host = `${'a'.repeat(63)}.${'b'.repeat(20)}.example`
  const leaf = new X509Certificate(await minter.certPemFor(host))
  t.equal(leaf.subject, `CN=${host.slice(0, 64)}`)
  t.equal(leaf.subjectAltName, `DNS:${host}`)
  t.equal(leaf.checkHost(host), host)
})

t.test('what is not a host is refused with a 400', async t => {
  for (const bad of ['', 'a b', 'host:443', '*.example.com', 'exa/mple', '-lead.test', 'a..b', `${'x'.repeat(64)}.test`, 'ünï.test']) {
    await t.rejects(minter.secureContextFor(bad), ProxyError, JSON.stringify(bad))
    await t.rejects(minter.secureContextFor(bad), { status: 400, code: 'ERR_INVALID_HOST' })
  }
})

t.test('minting before init() rejects', async t => {
  await t.rejects(new LeafCertMinter(ca).secureContextFor('early.test'), /init\(\) has not completed/)
})

t.test('an EC operator CA signs leaves that verify', async t => {
  const d = t.testdir()
  const ecCa = await loadOrCreateCa({ caDir: join(d, 'ca'), ...writeEcCa(d), log })
  const m = new LeafCertMinter(ecCa)
  await m.init()
  const pem = await m.certPemFor('ec.test')
  t.match(opensslText(pem), /Signature Algorithm: ecdsa-with-SHA256/)
  t.match(opensslVerify(join(d, 'ec.crt'), pem), /: OK$/)
  // The CA expires in 30 days: leaves must not outlive it.
  t.ok(Date.parse(new X509Certificate(pem).validTo) <= Date.parse(ecCa.cert.validTo))
})

t.test('init() refuses a CA whose leaves would not chain to it', async t => {
  // A CA record whose subject is another CA's: every leaf would name the wrong issuer.
  const other = await loadOrCreateCa({ caDir: join(t.testdir(), 'ca'), caCrtFile: join(FIXTURES, 'test-ca.crt'), caKeyFile: join(FIXTURES, 'test-ca.key'), log })
  const inconsistent: CertificateAuthority = { ...ca, subjectDer: other.subjectDer }
  await t.rejects(new LeafCertMinter(inconsistent).init(), { name: 'ConfigError', message: /cannot issue server certificates/ })
})
