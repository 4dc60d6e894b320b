/**
 * Digests (image-spec descriptor.md): `<algorithm>:<encoded>`. Parsed once where they enter (a URL,
 * an upstream header, an index entry) into a `Digest`, which is what every layer below passes on;
 * nothing below re-parses the string.
 *
 * Only the algorithms crossdock can verify are accepted (sha256, sha512: image-spec's registered
 * ones): a digest that is grammatical but of another algorithm cannot be checked, so it is refused
 * (hosted) or never cached (pull-through).
 */
import { createHash } from 'node:crypto'
import { OciError } from '../errors.js'

/** Algorithms we hash with (node crypto names), and their lowercase-hex lengths. */
export const DIGEST_ALGORITHMS = { sha256: 64, sha512: 128 } as const
export type DigestAlgorithm = keyof typeof DIGEST_ALGORITHMS

export interface Digest {
  algorithm: DigestAlgorithm
  /** The encoded part: lowercase hex of DIGEST_ALGORITHMS[algorithm] characters. */
  hex: string
  /** `algorithm:hex`, the canonical string form (what headers and JSON carry). */
  value: string
}

// image-spec descriptor.md: algorithm components joined by [+._-], then an encoded part.
const DIGEST_GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/

/** Parses `algorithm:hex`; throws DIGEST_INVALID for a malformed digest or an algorithm we do not support. */
export function parseDigest (value: string): Digest {
  if (!DIGEST_GRAMMAR.test(value)) throw new OciError('DIGEST_INVALID', 'invalid digest', { detail: { digest: value.slice(0, 200) } })
  const [algorithm, hex] = value.split(':', 2)
  if (!(algorithm in DIGEST_ALGORITHMS)) throw new OciError('DIGEST_INVALID', 'unsupported digest algorithm', { detail: { digest: value.slice(0, 200), supported: Object.keys(DIGEST_ALGORITHMS) } })
  const alg = algorithm as DigestAlgorithm
  if (hex.length !== DIGEST_ALGORITHMS[alg] || !/^[a-f0-9]+$/.test(hex)) {
    throw new OciError('DIGEST_INVALID', `invalid ${alg} digest: expected ${DIGEST_ALGORITHMS[alg]} lowercase hex characters`, { detail: { digest: value.slice(0, 200) } })
  }
  return { algorithm: alg, hex, value }
}

/** The digest parsed, or undefined when it is not one crossdock can verify (same rules as parseDigest). */
export function tryParseDigest (value: string): Digest | undefined {
  const m = /^(sha256|sha512):([a-f0-9]+)$/.exec(value)
  if (m === null) return undefined
  const algorithm = m[1] as DigestAlgorithm
  return m[2].length === DIGEST_ALGORITHMS[algorithm] ? { algorithm, hex: m[2], value } : undefined
}


/** The digest of `bytes` under `algorithm` (what a pushed manifest is named by when pushed by tag). */
export function digestOfBytes (algorithm: DigestAlgorithm, bytes: Buffer): Digest {
  const hex = createHash(algorithm).update(bytes).digest('hex')
  return { algorithm, hex, value: `${algorithm}:${hex}` }
}
