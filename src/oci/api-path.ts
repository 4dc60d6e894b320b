/**
 * Which repository a distribution API path names (spec: "<name> MUST match", any depth):
 *
 *   /v2/<name>/blobs/<digest>            read          /v2/<name>/blobs/uploads/…   push
 *   /v2/<name>/manifests/<reference>     read (or push with PUT)
 *   /v2/<name>/tags/list                 read          /v2/<name>/referrers/<digest>  read
 *
 * The name ends at the first endpoint word, as distribution routes it.
 */
export type Endpoint = 'blobs' | 'manifests' | 'tags' | 'referrers'

const REPOSITORY_PATH = /^\/v2\/(.+?)\/(blobs|manifests|tags|referrers)\/(.*)$/

/** The repository and endpoint of `path` (query ignored); undefined for `/v2/`, `_catalog`, others. */
export function repositoryOfPath (path: string): { repository: string, endpoint: Endpoint, rest: string } | undefined {
  const q = path.indexOf('?')
  const m = REPOSITORY_PATH.exec(q === -1 ? path : path.slice(0, q))
  return m === null ? undefined : { repository: m[1], endpoint: m[2] as Endpoint, rest: m[3] }
}

/** The repository of a read (blob, manifest, tags list, referrers); undefined for uploads and others. */
export function repositoryOfRead (path: string): string | undefined {
  const p = repositoryOfPath(path)
  if (p === undefined || p.rest === '' || p.rest.includes('/')) return undefined
  if ((p.endpoint === 'blobs' && p.rest === 'uploads') || (p.endpoint === 'tags' && p.rest !== 'list')) return undefined
  return p.repository
}
