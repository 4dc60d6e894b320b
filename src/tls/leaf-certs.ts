/**
 * Per-host leaf certificates for the proxy door's TLS interception (design §5): minted on a host's
 * first CONNECT, so adding a registry needs no restart, and kept as ready `tls.SecureContext`s in
 * an LRU. All leaves share one RSA key made at start; what costs per host is one OpenSSL signature.
 *
 *   secureContextFor(host) ─▶ normalise ─▶ LRU hit? ─yes─▶ context
 *                                             │ no
 *                                             ▼
 *                        SingleFlight(host): forge template ─▶ signCertificate (crypto.sign)
 *                                             ─▶ tls.createSecureContext ─▶ LRU
 */
import { createHash, generateKeyPair, X509Certificate } from 'node:crypto'
import { isIP } from 'node:net'
import { createSecureContext, type SecureContext } from 'node:tls'
import { promisify } from 'node:util'
import { LRUCache } from 'lru-cache'
import forge from 'node-forge'
import { ConfigError, ProxyError } from '../errors.js'
import { SingleFlight } from '../util/single-flight.js'
import type { CertificateAuthority } from './ca.js'
import { asn1Of, randomSerialHex, signCertificate } from './sign-certificate.js'

const generateKeyPairAsync = promisify(generateKeyPair)

const HOUR_MS = 60 * 60 * 1000
const DAY_MS = 24 * HOUR_MS
// Clients whose clocks run a little behind must not see the leaf as not yet valid.
const CLOCK_SKEW_MS = HOUR_MS
// Apple and the CA/B Forum cap server certificates at 397/398 days; the whole span, skew included,
// stays under 397.
const LEAF_LIFETIME_MS = 396 * DAY_MS
// Re-mint a day before a cached leaf expires, so no client is handed one on its last second.
const RENEW_MARGIN_MS = DAY_MS
const SELF_TEST_HOST = 'crossdock-self-test.invalid'

export interface LeafCertMinterOptions {
  /** How many hosts' secure contexts to keep (default 1000). */
  max?: number
}

interface Leaf {
  certPem: string
  context: SecureContext
}

interface LeafKey {
  pem: string
  forgePublic: forge.pki.rsa.PublicKey
  /** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits; the same for every leaf. */
  keyIdentifier: string
}

export class LeafCertMinter {
  private readonly ca: CertificateAuthority
  private readonly cache: LRUCache<string, Leaf>
  private readonly flight = new SingleFlight<Leaf>()
  private readonly issuerName: forge.asn1.Asn1
  private key: LeafKey | undefined
  private mintedCount = 0

  constructor (ca: CertificateAuthority, opts: LeafCertMinterOptions = {}) {
    this.ca = ca
    this.cache = new LRUCache<string, Leaf>({ max: opts.max ?? 1000 })
    this.issuerName = asn1Of(ca.subjectDer)
  }

  /** Leaves minted since start (for metrics); cache hits and the start-up self-test do not count. */
  get minted (): number {
    return this.mintedCount
  }

  /** Hosts whose secure context is cached. */
  get size (): number {
    return this.cache.size
  }

  /**
   * Makes the shared leaf key (async, in the thread pool) and mints one throw-away leaf that
   * OpenSSL must accept as issued and signed by the CA: a CA that cannot really issue (or an
   * encoding mistake of ours) fails here, at start, rather than on every client's first CONNECT.
   */
  async init (): Promise<void> {
    const { publicKey, privateKey } = await generateKeyPairAsync('rsa', { modulusLength: 2048 })
    const spkiPem = publicKey.export({ type: 'spki', format: 'pem' }) as string
    const pkcs1 = publicKey.export({ type: 'pkcs1', format: 'der' })
    this.key = {
      pem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      forgePublic: forge.pki.publicKeyFromPem(spkiPem),
      keyIdentifier: createHash('sha1').update(pkcs1).digest('binary'),
    }
    const probe = new X509Certificate((await this.mint(SELF_TEST_HOST)).leaf.certPem)
    if (!probe.checkIssued(this.ca.cert) || !probe.verify(this.ca.cert.publicKey)) {
      throw new ConfigError(`the root CA "${this.ca.cert.subject}" cannot issue server certificates: OpenSSL does not accept a leaf it signed as its own`)
    }
  }

  /**
   * The TLS context to present for `host` (a name or an IP literal, without port; `[v6]` brackets
   * are accepted). Cached; concurrent first calls for one host share one mint. Rejects with a
   * ProxyError 400 for something that is not a host name.
   */
  async secureContextFor (host: string): Promise<SecureContext> {
    return (await this.leafFor(host)).context
  }

  /** The PEM leaf certificate `secureContextFor(host)` presents. */
  async certPemFor (host: string): Promise<string> {
    return (await this.leafFor(host)).certPem
  }

  private async leafFor (host: string): Promise<Leaf> {
    const name = normaliseHost(host)
    const hit = this.cache.get(name)
    if (hit !== undefined) return hit
    return await this.flight.run(name, async () => {
      const { leaf, notAfter } = await this.mint(name)
      this.mintedCount++
      this.cache.set(name, leaf, { ttl: Math.max(notAfter.getTime() - Date.now() - RENEW_MARGIN_MS, 60_000) })
      return leaf
    })
  }

  private async mint (name: string): Promise<{ leaf: Leaf, notAfter: Date }> {
    const key = this.key
    if (key === undefined) throw new Error('LeafCertMinter: init() has not completed')
    const now = Date.now()
    // Never outlive the CA: a leaf valid past its issuer fails verification anyway.
    const notAfter = new Date(Math.min(now + LEAF_LIFETIME_MS, this.ca.notAfter.getTime()))
    const cert = forge.pki.createCertificate()
    cert.publicKey = key.forgePublic
    cert.serialNumber = randomSerialHex()
    cert.validity.notBefore = new Date(now - CLOCK_SKEW_MS)
    cert.validity.notAfter = notAfter
    // ub-common-name is 64; the SAN carries the full name, and it is what clients check.
    cert.setSubject([{ shortName: 'CN', value: name.slice(0, 64) }])
    const ip = isIP(name)
    const extensions: object[] = [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      // Go and modern browsers ignore the CN and require a SAN: DNS name, or IP for an IP literal.
      { name: 'subjectAltName', altNames: [ip === 0 ? { type: 2, value: name } : { type: 7, value: ipBytes(name, ip) }] },
      { name: 'subjectKeyIdentifier', value: octetString(key.keyIdentifier) },
    ]
    if (this.ca.keyIdentifier !== undefined) {
      extensions.push({ name: 'authorityKeyIdentifier', keyIdentifier: this.ca.keyIdentifier.toString('binary') })
    }
    cert.setExtensions(extensions)
    const { pem } = await signCertificate(cert, this.ca.key, this.issuerName)
    // Only the leaf: clients already hold the root, and a shorter chain is a smaller handshake.
    const context = createSecureContext({ key: key.pem, cert: pem })
    return { leaf: { certPem: pem, context }, notAfter }
  }
}

/**
 * Lower-cases a host and strips IPv6 brackets, an IPv6 zone and a DNS root dot, so one host maps to
 * one cache entry. Anything else than a plain name or IP literal is refused: the value comes from a
 * client's CONNECT line and ends up in a certificate.
 */
function normaliseHost (host: string): string {
  let h = host.trim().toLowerCase()
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1)
  const zone = h.indexOf('%')
  if (zone !== -1 && isIP(h.slice(0, zone)) === 6) h = h.slice(0, zone)
  if (isIP(h) !== 0) return h
  if (h.endsWith('.')) h = h.slice(0, -1)
  const labelsOk = h.split('.').every(l => l.length >= 1 && l.length <= 63 && /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$/.test(l))
  if (h.length === 0 || h.length > 253 || !labelsOk) {
    throw new ProxyError(400, 'ERR_INVALID_HOST', `not a host name or IP address: ${JSON.stringify(host.slice(0, 300))}`)
  }
  return h
}

/** The iPAddress GeneralName is the raw 4 or 16 network-order bytes (RFC 5280 §4.2.1.6). */
function ipBytes (ip: string, family: number): string {
  if (family === 4) return String.fromCharCode(...ip.split('.').map(Number))
  // Our own IPv6 expansion: forge's bytesFromIPv6 mishandles an embedded IPv4 tail (::ffff:1.2.3.4).
  let text = ip
  const tail: number[] = []
  const lastColon = text.lastIndexOf(':')
  if (text.includes('.', lastColon)) {
    tail.push(...text.slice(lastColon + 1).split('.').map(Number))
    text = text.slice(0, lastColon + 1) + '0:0'
  }
  const [left, right] = text.split('::') as [string, string | undefined]
  const groupsOf = (s: string | undefined): number[] => (s === undefined || s === '' ? [] : s.split(':').map(g => parseInt(g, 16)))
  const l = groupsOf(left)
  const r = groupsOf(right)
  const groups = right === undefined ? l : [...l, ...new Array<number>(8 - l.length - r.length).fill(0), ...r]
  const bytes = Buffer.alloc(16)
  groups.forEach((g, i) => bytes.writeUInt16BE(g, i * 2))
  if (tail.length === 4) bytes.set(tail, 12)
  return bytes.toString('binary')
}

function octetString (bytes: string): forge.asn1.Asn1 {
  return forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.OCTETSTRING, false, bytes)
}
