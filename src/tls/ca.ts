/**
 * The root CA that signs the proxy door's per-host leaves (design §5). Either the operator's own
 * (CA_CRT_FILE + CA_KEY_FILE: loaded, checked, never written) or ours, created on first start as
 * `<caDir>/ca.crt` + `<caDir>/ca.key` and reused on every later start, so clients that installed
 * it keep trusting us across restarts and upgrades.
 *
 * rpardini/docker-registry-proxy's /ca volume works as it is: its ca.key is encrypted (des3) with
 * the passphrase `foobar` hard-coded in its create_ca_cert.sh, so an encrypted key is opened with
 * CA_KEY_PASSPHRASE, or `foobar` when none is set.
 */
import { generateKeyPair, createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto'
import { mkdir, readFile, rename, stat, writeFile, rm } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import forge from 'node-forge'
import { ConfigError } from '../errors.js'
import type { Logger } from '../log.js'
import { accessProblem } from '../util/file-access.js'
import { asn1Of, bytesOf, randomSerialHex, signCertificate, SIGNING_KEY_TYPES } from './sign-certificate.js'

const generateKeyPairAsync = promisify(generateKeyPair)

export interface CertificateAuthority {
  /** The root certificate, PEM: what clients install (served at /ca.crt). */
  readonly certPem: string
  readonly cert: X509Certificate
  /** Signs leaves. Never logged, never served. RSA or EC. */
  readonly key: KeyObject
  /** DER of the CA's subject Name; leaves copy it byte for byte as their issuer. */
  readonly subjectDer: Buffer
  /** The CA's subjectKeyIdentifier, which leaves carry as authorityKeyIdentifier; undefined if an operator's CA has none. */
  readonly keyIdentifier: Buffer | undefined
  readonly notAfter: Date
  /** `created` on first start, `reused` from caDir, `operator` from CA_CRT_FILE/CA_KEY_FILE. */
  readonly origin: 'created' | 'reused' | 'operator'
}

export interface LoadOrCreateCaOptions {
  caDir: string
  caCrtFile?: string
  caKeyFile?: string
  /** CA_KEY_PASSPHRASE; undefined: rpardini's `foobar` for an encrypted key. */
  caKeyPassphrase?: string
  log: Logger
}

/** rpardini's create_ca_cert.sh encrypts its ca.key with this, hard-coded. */
export const RPARDINI_CA_PASSPHRASE = 'foobar'

const CA_YEARS = 10
// Clients whose clocks run a little behind must not see the certificate as not yet valid.
const CLOCK_SKEW_MS = 60 * 60 * 1000

export async function loadOrCreateCa (opts: LoadOrCreateCaOptions): Promise<CertificateAuthority> {
  const log = opts.log.child({ module: 'tls' })
  const found = await loadExistingCa(opts)
  if (found !== undefined) {
    const { ca, crtPath, keyPath, keyMode } = found
    if (ca.origin === 'operator') {
      log.info({ caFile: crtPath, subject: ca.cert.subject, fingerprint256: ca.cert.fingerprint256, notAfter: ca.notAfter }, 'using the operator\'s root CA')
      return ca
    }
    if ((keyMode & 0o077) !== 0) {
      log.warn({ caKeyFile: keyPath, mode: (keyMode & 0o777).toString(8) }, 'the CA private key is readable by other users; chmod 600 it')
    }
    log.info({ caFile: crtPath, fingerprint256: ca.cert.fingerprint256, notAfter: ca.notAfter }, 'reusing the root CA')
    return ca
  }
  const crtPath = caCertFile({ caDir: opts.caDir })
  const ca = await createCa(opts.caDir, crtPath, join(opts.caDir, 'ca.key'))
  log.info({ caFile: crtPath, subject: ca.cert.subject, fingerprint256: ca.cert.fingerprint256, notAfter: ca.notAfter }, 'created a new root CA; clients must trust ca.crt')
  return ca
}

/**
 * The CA that is already there (the operator's files, or ca.crt + ca.key in caDir), parsed and
 * checked; undefined when caDir holds neither file (loadOrCreateCa then creates one). Writes
 * nothing, so `crossdock config check` runs it too. Throws a one-line ConfigError otherwise.
 */
export async function loadExistingCa (opts: Omit<LoadOrCreateCaOptions, 'log'>): Promise<{ ca: CertificateAuthority, crtPath: string, keyPath: string, keyMode: number } | undefined> {
  const crtFile = opts.caCrtFile ?? ''
  const keyFile = opts.caKeyFile ?? ''
  if (crtFile !== '' || keyFile !== '') {
    if (crtFile === '' || keyFile === '') {
      throw new ConfigError('CA_CRT_FILE and CA_KEY_FILE must be set together (the operator\'s CA certificate and its private key)')
    }
    const ca = await loadCaFiles(crtFile, keyFile, 'operator', opts.caKeyPassphrase)
    return { ca, crtPath: crtFile, keyPath: keyFile, keyMode: 0o600 }
  }
  const crtPath = caCertFile({ caDir: opts.caDir })
  const keyPath = join(opts.caDir, 'ca.key')
  const [crtStat, keyStat] = await Promise.all([statOrUndefined(crtPath), statOrUndefined(keyPath)])
  if (crtStat !== undefined && keyStat !== undefined) {
    const ca = await loadCaFiles(crtPath, keyPath, 'reused', opts.caKeyPassphrase)
    return { ca, crtPath, keyPath, keyMode: keyStat.mode }
  }
  // Half a CA is never silently replaced: clients may trust the certificate, or the key may be the
  // operator's; regenerating would break them without a word.
  if (crtStat !== undefined || keyStat !== undefined) {
    const [present, missing] = crtStat !== undefined ? [crtPath, keyPath] : [keyPath, crtPath]
    throw new ConfigError(`CA_DIR: ${present} exists but ${missing} does not; restore it, or remove ${present} to create a new root CA`)
  }
  return undefined
}

/** The root certificate crossdock presents: the operator's CA_CRT_FILE, else `ca.crt` in CA_DIR. */
export function caCertFile (opts: { caDir: string, caCrtFile?: string }): string {
  return opts.caCrtFile ?? join(opts.caDir, 'ca.crt')
}

async function createCa (caDir: string, crtPath: string, keyPath: string): Promise<CertificateAuthority> {
  // RSA-2048: what every client accepts. generateKeyPair runs in the thread pool (~100 ms+).
  const { publicKey, privateKey } = await generateKeyPairAsync('rsa', { modulusLength: 2048 })
  const cert = forge.pki.createCertificate()
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }) as string)
  cert.serialNumber = randomSerialHex()
  const notBefore = new Date(Date.now() - CLOCK_SKEW_MS)
  const notAfter = new Date(notBefore)
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + CA_YEARS)
  cert.validity.notBefore = notBefore
  cert.validity.notAfter = notAfter
  // ub-common-name is 64 characters (RFC 5280 Appendix A).
  const subject = [
    { shortName: 'CN', value: `crossdock root CA ${hostname()}`.slice(0, 64) },
    { shortName: 'O', value: 'crossdock' },
  ]
  cert.setSubject(subject)
  cert.setIssuer(subject)
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ])
  const { pem: certPem } = await signCertificate(cert, privateKey)
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string

  await mkdir(caDir, { recursive: true, mode: 0o700 })
  // Write both under temporary names, then rename: a crash never leaves a truncated file, and the
  // key is 0600 from its first byte (mode applies at creation, before any content is written).
  const tmp = `.tmp-${process.pid}-${Date.now()}`
  try {
    await writeFile(keyPath + tmp, keyPem, { mode: 0o600, flag: 'wx' })
    await writeFile(crtPath + tmp, certPem, { mode: 0o644, flag: 'wx' })
    await rename(keyPath + tmp, keyPath)
    await rename(crtPath + tmp, crtPath)
  } catch (err) {
    await Promise.all([rm(keyPath + tmp, { force: true }), rm(crtPath + tmp, { force: true })])
    throw new ConfigError(`CA_DIR: cannot write the new root CA: ${accessProblem(caDir, err)}`)
  }
  return caFrom(Buffer.from(certPem), Buffer.from(keyPem), crtPath, keyPath, 'created')
}

async function loadCaFiles (crtPath: string, keyPath: string, origin: CertificateAuthority['origin'], passphrase: string | undefined): Promise<CertificateAuthority> {
  // Both read at once, but the certificate's problem is the one reported when both fail (Promise.all
  // would report whichever failed first: a different line from run to run).
  const [crt, key] = await Promise.allSettled([readOrThrow(crtPath, 'certificate'), readOrThrow(keyPath, 'private key')])
  if (crt.status === 'rejected') throw crt.reason
  if (key.status === 'rejected') throw key.reason
  return caFrom(crt.value, key.value, crtPath, keyPath, origin, passphrase)
}

/** Parses and checks a CA pair; every failure names the file and what is wrong with it. */
function caFrom (crt: Buffer, keyBytes: Buffer, crtPath: string, keyPath: string, origin: CertificateAuthority['origin'], passphrase?: string): CertificateAuthority {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(crt)
  } catch (err) {
    throw new ConfigError(`${crtPath}: not a PEM or DER X.509 certificate (${(err as Error).message})`)
  }
  let key: KeyObject
  // An unencrypted key ignores the passphrase; an encrypted one (PKCS#8 or OpenSSL's traditional
  // Proc-Type: 4,ENCRYPTED) needs it.
  const encrypted = keyBytes.includes('ENCRYPTED')
  try {
    key = createPrivateKey({ key: keyBytes, passphrase: passphrase ?? RPARDINI_CA_PASSPHRASE })
  } catch (err) {
    if (encrypted) {
      const tried = passphrase === undefined ? `rpardini's default passphrase "${RPARDINI_CA_PASSPHRASE}"; set CA_KEY_PASSPHRASE to its passphrase` : 'CA_KEY_PASSPHRASE; check its value'
      throw new ConfigError(`${keyPath}: the encrypted CA key does not open with ${tried}`)
    }
    throw new ConfigError(`${keyPath}: not a PEM or DER private key (${(err as Error).message})`)
  }
  if (!(SIGNING_KEY_TYPES as readonly string[]).includes(key.asymmetricKeyType ?? '')) {
    throw new ConfigError(`${keyPath}: a ${String(key.asymmetricKeyType)} key cannot sign our certificates; use an RSA or EC key`)
  }
  if (!cert.ca) {
    throw new ConfigError(`${crtPath}: not a CA certificate (it needs basicConstraints CA:TRUE and, if it has a keyUsage, keyCertSign), so it cannot sign leaf certificates`)
  }
  if (!cert.checkPrivateKey(key)) {
    throw new ConfigError(`${keyPath}: this private key does not belong to the certificate in ${crtPath}`)
  }
  const notAfter = new Date(cert.validTo)
  if (!(notAfter.getTime() > Date.now())) {
    throw new ConfigError(`${crtPath}: the CA certificate expired on ${cert.validTo}`)
  }
  const { subjectDer, keyIdentifier } = issuerFieldsOf(cert.raw, crtPath)
  return { certPem: cert.toString(), cert, key, subjectDer, keyIdentifier, notAfter, origin }
}

/**
 * Reads the subject Name (as DER) and the subjectKeyIdentifier out of a certificate. Node's
 * X509Certificate exposes neither, and forge's certificate parser only knows RSA keys, so this
 * walks the generic ASN.1 and works for any CA key type.
 */
function issuerFieldsOf (der: Buffer, crtPath: string): { subjectDer: Buffer, keyIdentifier: Buffer | undefined } {
  try {
    const tbs = (asn1Of(der).value as forge.asn1.Asn1[])[0].value as forge.asn1.Asn1[]
    // TBSCertificate: [0] version (present in v3), serialNumber, signature, issuer, validity, subject, …
    const hasVersion = tbs[0].tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && tbs[0].type === 0
    const subjectDer = bytesOf(tbs[hasVersion ? 5 : 4])
    let keyIdentifier: Buffer | undefined
    const extensions = tbs.find(f => f.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && f.type === 3)
    for (const ext of ((extensions?.value as forge.asn1.Asn1[] | undefined)?.[0]?.value ?? []) as forge.asn1.Asn1[]) {
      const parts = ext.value as forge.asn1.Asn1[]
      if (forge.asn1.derToOid(parts[0].value as string) !== '2.5.29.14') continue
      // extnValue is an OCTET STRING wrapping the DER of SubjectKeyIdentifier ::= OCTET STRING.
      const extnValue = parts[parts.length - 1].value as string
      keyIdentifier = Buffer.from(forge.asn1.fromDer(extnValue).value as string, 'binary')
    }
    return { subjectDer, keyIdentifier }
  } catch (err) {
    throw new ConfigError(`${crtPath}: cannot read the certificate's subject and key identifier (${(err as Error).message})`)
  }
}

async function readOrThrow (file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file)
  } catch (err) {
    throw new ConfigError(`cannot read the CA ${what}: ${accessProblem(file, err)}`)
  }
}

async function statOrUndefined (file: string): Promise<import('node:fs').Stats | undefined> {
  try {
    return await stat(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new ConfigError(`cannot access the CA file: ${accessProblem(file, err)}`)
  }
}
