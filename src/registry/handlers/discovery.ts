/**
 * Content discovery (spec: end-1, end-8a/b, end-12a/b) and distribution's `/v2/_catalog`.
 * Lists are lexically sorted; `n`/`last` pagination answers with a `Link: <…>; rel="next"`.
 */
import { OciError } from '../../errors.js'
import type { Handler } from '../context.js'
import { paginate, paginationOf, pathOf, sendJson } from '../http.js'
import { MEDIA_TYPES } from '../../oci/media-types.js'
import { parseDigest } from '../../oci/digest.js'

/** Catalog pages hold at most this many repositories unless the client asks for `n`. */
const CATALOG_DEFAULT_PAGE = 1000

function link (path: string, n: number, last: string): string {
  return `<${path}?n=${n}&last=${encodeURIComponent(last)}>; rel="next"`
}

// spec: end-1. 200 means the OCI API is spoken here.
export const ping: Handler = async ({ req, res }) => {
  sendJson(res, req.method, 200, {})
}

// distribution's catalog: repositories holding manifests, paginated like tags.
export const catalog: Handler = async ({ req, res, query, storage, basePath }) => {
  const { n, last } = paginationOf(query)
  const size = n ?? CATALOG_DEFAULT_PAGE
  const { page, next } = paginate(await storage.manifests.repositories(), { n: size, last })
  sendJson(res, req.method, 200, { repositories: page }, next === undefined ? {} : { link: link(pathOf(basePath, '/v2/_catalog'), size, next) })
}

// spec: end-8a, end-8b.
export const listTags: Handler = async ({ req, res, name, query, storage, basePath }) => {
  const { n, last } = paginationOf(query)
  const tags = await storage.tags.list(name)
  if (tags === undefined) throw new OciError('NAME_UNKNOWN', undefined, { detail: { name } })
  const { page, next } = paginate(tags, { n, last })
  const headers: Record<string, string> = next === undefined || n === undefined ? {} : { link: link(pathOf(basePath, `/v2/${name}/tags/list`), n, next) }
  sendJson(res, req.method, 200, { name, tags: page }, headers)
}

// spec: end-12a, end-12b. Always an image index: empty for a digest nothing refers to.
export const listReferrers: Handler = async ({ req, res, name, params, query, storage }) => {
  const subject = parseDigest(params.digest)
  const artifactType = query.get('artifactType')
  let manifests = await storage.manifests.referrers(name, subject)
  const headers: Record<string, string> = { 'content-type': MEDIA_TYPES.ociIndex }
  if (artifactType !== null && artifactType !== '') {
    manifests = manifests.filter(d => d.artifactType === artifactType)
    headers['oci-filters-applied'] = 'artifactType'
  }
  sendJson(res, req.method, 200, { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests }, headers)
}
