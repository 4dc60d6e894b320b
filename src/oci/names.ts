/**
 * The grammar of the things a client may put in a URL: repository names, tags, references and
 * upload session ids; one grammar for the hosted registry and the pull-through doors. Everything
 * that reaches storage has been through one of these parsers first; that is also the
 * path-traversal defence (`..`, `/` in a tag, `%2F`, absolute paths cannot pass).
 */
import { OciError } from '../errors.js'
import { parseDigest, type Digest } from './digest.js'

// spec: "<name> MUST match" — components of lowercase alphanumerics joined by `.`, `_`, `__` or dashes.
const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*'
const NAME_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`)
/** The spec caps a repository name (slashes included) below 256 characters. */
export const NAME_MAX_LENGTH = 255
// spec: a tag is at most 128 characters of `[a-zA-Z0-9_][a-zA-Z0-9._-]*`.
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/
const UPLOAD_ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

export function isValidName (name: string): boolean {
  return name.length > 0 && name.length <= NAME_MAX_LENGTH && NAME_RE.test(name)
}

/** Returns `name` when it is a valid repository name; throws NAME_INVALID otherwise. */
export function assertName (name: string): string {
  if (!isValidName(name)) throw nameInvalid(name)
  return name
}

/** NAME_INVALID for `name`, saying which rule it breaks. */
export function nameInvalid (name: string): OciError {
  const why = name.length > NAME_MAX_LENGTH ? `longer than ${NAME_MAX_LENGTH} characters` : 'does not match the repository name grammar'
  return new OciError('NAME_INVALID', undefined, { detail: { name: name.slice(0, 300), reason: why } })
}

export function isValidTag (tag: string): boolean {
  return TAG_RE.test(tag)
}

/** A manifest reference is a digest (it has a colon, tags cannot) or a tag. */
export type Reference = { kind: 'digest', digest: Digest } | { kind: 'tag', tag: string }

/** Parses a manifest reference: DIGEST_INVALID for a bad digest, MANIFEST_INVALID for a bad tag. */
export function parseReference (reference: string): Reference {
  if (reference.includes(':')) return { kind: 'digest', digest: parseDigest(reference) }
  if (!isValidTag(reference)) throw new OciError('MANIFEST_INVALID', 'invalid tag', { detail: { tag: reference.slice(0, 200) } })
  return { kind: 'tag', tag: reference }
}

/** Upload session ids are v4 UUIDs we minted; anything else is unknown (never a path). */
export function isUploadId (id: string): boolean {
  return UPLOAD_ID_RE.test(id)
}
