/**
 * The grammar of the things a client may put in a URL: repository names, tags, digests and upload
 * session ids. Everything that reaches storage has been through one of these parsers first; that is
 * also the path-traversal defence (`..`, `/` in a tag, `%2F`, absolute paths cannot pass).
 */
import { OciError } from '../errors.js'

// spec: "<name> MUST match" — components of lowercase alphanumerics joined by `.`, `_`, `__` or dashes.
const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*'
const NAME_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`)
/** The spec caps a repository name (slashes included) below 256 characters. */
export const NAME_MAX_LENGTH = 255
// spec: a tag is at most 128 characters of `[a-zA-Z0-9_][a-zA-Z0-9._-]*`.
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/
// image-spec descriptor.md: algorithm components joined by [+._-], then an encoded part.
const DIGEST_GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/
const UPLOAD_ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** Algorithms we hash with (node crypto names), and their lowercase-hex lengths (image-spec: registered algorithms). */
export const DIGEST_ALGORITHMS = { sha256: 64, sha512: 128 } as const
export type DigestAlgorithm = keyof typeof DIGEST_ALGORITHMS

export interface Digest {
  algorithm: DigestAlgorithm
  hex: string
  /** `algorithm:hex`, the canonical string form. */
  value: string
}

export function isValidName (name: string): boolean {
  return name.length > 0 && name.length <= NAME_MAX_LENGTH && NAME_RE.test(name)
}

/** Returns `name` when it is a valid repository name; throws NAME_INVALID otherwise. */
export function assertName (name: string): string {
  if (!isValidName(name)) {
    const why = name.length > NAME_MAX_LENGTH ? `longer than ${NAME_MAX_LENGTH} characters` : 'does not match the repository name grammar'
    throw new OciError('NAME_INVALID', undefined, { detail: { name: name.slice(0, 300), reason: why } })
  }
  return name
}

export function isValidTag (tag: string): boolean {
  return TAG_RE.test(tag)
}

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

/** A manifest reference is a digest (it has a colon, tags cannot) or a tag. */
export type Reference = { kind: 'digest', digest: Digest } | { kind: 'tag', tag: string }

export function parseReference (reference: string): Reference {
  if (reference.includes(':')) return { kind: 'digest', digest: parseDigest(reference) }
  if (!isValidTag(reference)) throw new OciError('MANIFEST_INVALID', 'invalid tag', { detail: { tag: reference.slice(0, 200) } })
  return { kind: 'tag', tag: reference }
}

/** Upload session ids are v4 UUIDs we minted; anything else is unknown (never a path). */
export function isUploadId (id: string): boolean {
  return UPLOAD_ID_RE.test(id)
}
