/**
 * Tag records are keyed by what can change the answer of a tag resolution: the upstream host, the
 * repository, the tag and the media types the client accepts (a client that only accepts schema2
 * gets a different manifest than one that accepts OCI indexes). Never by path alone: the same path
 * on two upstreams (or through two doors) is two different tags.
 */

export interface TagRef {
  /** Upstream host (`registry-1.docker.io`, `ghcr.io`, `host:port`). */
  host: string
  repository: string
  tag: string
  /** The client's Accept header(s), as received. */
  accept?: string | string[]
}

/** A tag resolution remembered: which manifest the tag pointed to, and when the upstream said so. */
export interface TagRecord {
  digest: string
  mediaType: string
  size: number
  /** Milliseconds since the epoch of the last upstream answer about this tag. */
  fetchedAt: number
}

/**
 * The Accept value in one canonical spelling: media ranges lower-cased, whitespace dropped,
 * duplicates removed, sorted (clients send the same set in different orders and as one header or
 * several).
 */
export function normalizeAccept (accept: string | string[] | undefined): string {
  if (accept === undefined) return ''
  const parts = (Array.isArray(accept) ? accept : [accept])
    .flatMap(a => a.split(','))
    .map(a => a.replace(/\s+/g, '').toLowerCase())
    .filter(a => a !== '')
  return [...new Set(parts)].sort().join(',')
}

export function tagKey (ref: TagRef): string {
  return `tag:${ref.host.toLowerCase()}/${ref.repository}:${ref.tag}#${normalizeAccept(ref.accept)}`
}
