/**
 * Turns a node-forge certificate template into a signed X.509 certificate, with the signature made
 * by OpenSSL through Node's `crypto.sign` (a few ms, off the main thread) instead of forge's
 * pure-JS RSA (tens of ms, blocking). Shared by the root CA (self-signed) and the leaf minter.
 *
 *   forge template ──getTBSCertificate──▶ TBSCertificate (ASN.1)
 *        │  patch: signature AlgorithmIdentifier for the signer's key, issuer Name (byte copy)
 *        ▼
 *   tbsDer ──crypto.sign('sha256', tbsDer, key)──▶ signature
 *        ▼
 *   Certificate ::= SEQUENCE { tbsDer, algorithmIdentifier, BIT STRING signature }
 */
import { sign, randomBytes, type KeyObject } from 'node:crypto'
import { promisify } from 'node:util'
import forge from 'node-forge'

const signAsync = promisify(sign) as (algorithm: string, data: Buffer, key: KeyObject) => Promise<Buffer>

// Present in node-forge 1.x but missing from @types/node-forge.
const getTBSCertificate = (forge.pki as unknown as {
  getTBSCertificate: (cert: forge.pki.Certificate) => forge.asn1.Asn1
}).getTBSCertificate

/** RFC 4055 sha256WithRSAEncryption and RFC 5758 ecdsa-with-SHA256. */
const OID_SHA256_RSA = '1.2.840.113549.1.1.11'
const OID_SHA256_ECDSA = '1.2.840.10045.4.3.2'

/** Key types a CA may have: what `crypto.sign('sha256', …)` signs and we can name in the certificate. */
export const SIGNING_KEY_TYPES = ['rsa', 'ec'] as const

/**
 * A positive, non-zero serial of 16 random bytes, as forge wants it (hex). The top bit is cleared so
 * the DER INTEGER is not negative (Go ≥ 1.23 rejects negative serials) and the first byte is
 * non-zero so the encoding stays minimal (Go's parser also rejects a padded INTEGER).
 */
export function randomSerialHex (): string {
  const bytes = randomBytes(16)
  bytes[0] = (bytes[0] & 0x7f) || 0x01
  return bytes.toString('hex')
}

/** forge binary string ↔ Buffer. */
export function bytesOf (asn1: forge.asn1.Asn1): Buffer {
  return Buffer.from(forge.asn1.toDer(asn1).getBytes(), 'binary')
}

export function asn1Of (der: Buffer): forge.asn1.Asn1 {
  return forge.asn1.fromDer(der.toString('binary'))
}

/**
 * Signs `cert` with `key`. `issuerName`, when given, replaces the issuer forge would encode from
 * `cert.issuer`: leaves carry the CA's subject byte for byte, so name matching during chain
 * building cannot be upset by a re-encoding (an operator's CA may use string types forge would
 * not choose). Returns the certificate as DER and PEM.
 */
export async function signCertificate (
  cert: forge.pki.Certificate,
  key: KeyObject,
  issuerName?: forge.asn1.Asn1,
): Promise<{ der: Buffer, pem: string }> {
  const algorithm = algorithmIdentifier(key)
  // forge insists on an algorithm OID to encode; its AlgorithmIdentifier is replaced just below.
  cert.siginfo.algorithmOid = OID_SHA256_RSA
  const tbs = getTBSCertificate(cert)
  const fields = tbs.value as forge.asn1.Asn1[]
  // TBSCertificate: [0] version, serialNumber, signature, issuer, validity, subject, spki, …
  fields[2] = asn1Of(algorithm)
  if (issuerName !== undefined) fields[3] = issuerName
  const tbsDer = bytesOf(tbs)
  const signature = await signAsync('sha256', tbsDer, key)
  const der = derTlv(0x30, Buffer.concat([tbsDer, algorithm, derTlv(0x03, Buffer.concat([Buffer.of(0), signature]))]))
  return { der, pem: pemOf(der) }
}

/**
 * The AlgorithmIdentifier for a sha256 signature by `key`. RSA carries an explicit NULL parameter
 * (RFC 4055 §5); ECDSA must have none (RFC 5758 §3.2), which forge would get wrong — it always
 * writes NULL — hence our own encoding. Node's ECDSA signatures are DER by default, as X.509 wants.
 */
function algorithmIdentifier (key: KeyObject): Buffer {
  const oid = (o: string): Buffer => bytesOf(forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.OID, false, forge.asn1.oidToDer(o).getBytes()))
  switch (key.asymmetricKeyType) {
    case 'rsa': return derTlv(0x30, Buffer.concat([oid(OID_SHA256_RSA), Buffer.of(0x05, 0x00)]))
    case 'ec': return derTlv(0x30, oid(OID_SHA256_ECDSA))
    default: throw new TypeError(`cannot sign certificates with a ${String(key.asymmetricKeyType)} key`)
  }
}

function derTlv (tag: number, content: Buffer): Buffer {
  const n = content.length
  let length: Buffer
  if (n < 0x80) length = Buffer.of(n)
  else if (n < 0x100) length = Buffer.of(0x81, n)
  else if (n < 0x10000) length = Buffer.of(0x82, n >> 8, n & 0xff)
  else length = Buffer.of(0x83, n >> 16, (n >> 8) & 0xff, n & 0xff)
  return Buffer.concat([Buffer.of(tag), length, content])
}

export function pemOf (der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`
}
