/**
 * The hosted registry's API as a table, one row per endpoint of the OCI Distribution Spec v1.1
 * (ids as in the spec's endpoint table), plus distribution's catalog and upload cancel; and the
 * router that matches a request to a row and writes every error in one place.
 *
 * Patterns capture the repository name loosely (`.+`, names have any depth) and anchor on the
 * fixed suffix; the router then checks the name against the spec's grammar, so a bad name is
 * answered NAME_INVALID rather than 404. Rows are tried in order; `when` picks among rows that
 * share a method and pattern by query (end-4a/4b/11 are all `POST …/blobs/uploads/`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { OciError, isStorageFull, writeOciError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Action, Authorizer, Handler, MountSource, RequestContext } from './context.js'
import type { RegistryStorage } from './storage/stores.js'
import { assertName } from '../oci/names.js'
import { hasBody } from './http.js'
import { getBlob, deleteBlob } from './handlers/blobs.js'
import { startUpload, postMonolithic, mountBlob, patchUpload, putUpload, getUploadStatus, cancelUpload } from './handlers/uploads.js'
import { getManifest, putManifest, deleteManifest } from './handlers/manifests.js'
import { ping, catalog, listTags, listReferrers } from './handlers/discovery.js'
import { loggablePath } from '../observability/request-log.js'

export interface Route {
  /** The spec's endpoint id (end-N), or our name for endpoints outside its table. */
  id: string
  method: 'GET' | 'HEAD' | 'POST' | 'PATCH' | 'PUT' | 'DELETE'
  pattern: RegExp
  /** Among rows with the same method and pattern, the first whose `when` holds (or has none) wins. */
  when?: (query: URLSearchParams) => boolean
  action: Action
  handler: Handler
}

const BASE = /^\/v2\/?$/
const CATALOG = /^\/v2\/_catalog$/
const BLOB = /^\/v2\/(?<name>.+)\/blobs\/(?<digest>[^/]+)$/
const UPLOADS = /^\/v2\/(?<name>.+)\/blobs\/uploads\/?$/
const UPLOAD = /^\/v2\/(?<name>.+)\/blobs\/uploads\/(?<id>[^/]+)$/
const MANIFEST = /^\/v2\/(?<name>.+)\/manifests\/(?<reference>[^/]+)$/
const TAGS = /^\/v2\/(?<name>.+)\/tags\/list$/
const REFERRERS = /^\/v2\/(?<name>.+)\/referrers\/(?<digest>[^/]+)$/

const has = (key: string) => (q: URLSearchParams): boolean => q.has(key)
const paginated = (q: URLSearchParams): boolean => q.has('n') || q.has('last')

export const ROUTES: readonly Route[] = [
  { id: 'end-1', method: 'GET', pattern: BASE, action: 'ping', handler: ping },
  { id: 'end-1', method: 'HEAD', pattern: BASE, action: 'ping', handler: ping },
  { id: 'catalog', method: 'GET', pattern: CATALOG, action: 'catalog', handler: catalog },
  // Uploads come before blobs: `…/blobs/uploads/<id>` must not be read as a blob digest.
  { id: 'end-11', method: 'POST', pattern: UPLOADS, when: has('mount'), action: 'push', handler: mountBlob },
  { id: 'end-4b', method: 'POST', pattern: UPLOADS, when: has('digest'), action: 'push', handler: postMonolithic },
  { id: 'end-4a', method: 'POST', pattern: UPLOADS, action: 'push', handler: startUpload },
  { id: 'end-5', method: 'PATCH', pattern: UPLOAD, action: 'push', handler: patchUpload },
  { id: 'end-6', method: 'PUT', pattern: UPLOAD, action: 'push', handler: putUpload },
  { id: 'end-13', method: 'GET', pattern: UPLOAD, action: 'push', handler: getUploadStatus },
  { id: 'cancel-upload', method: 'DELETE', pattern: UPLOAD, action: 'push', handler: cancelUpload },
  { id: 'end-2', method: 'GET', pattern: BLOB, action: 'pull', handler: getBlob },
  { id: 'end-2', method: 'HEAD', pattern: BLOB, action: 'pull', handler: getBlob },
  { id: 'end-10', method: 'DELETE', pattern: BLOB, action: 'delete', handler: deleteBlob },
  { id: 'end-3', method: 'GET', pattern: MANIFEST, action: 'pull', handler: getManifest },
  { id: 'end-3', method: 'HEAD', pattern: MANIFEST, action: 'pull', handler: getManifest },
  { id: 'end-7', method: 'PUT', pattern: MANIFEST, action: 'push', handler: putManifest },
  { id: 'end-9', method: 'DELETE', pattern: MANIFEST, action: 'delete', handler: deleteManifest },
  { id: 'end-8b', method: 'GET', pattern: TAGS, when: paginated, action: 'pull', handler: listTags },
  { id: 'end-8a', method: 'GET', pattern: TAGS, action: 'pull', handler: listTags },
  { id: 'end-12b', method: 'GET', pattern: REFERRERS, when: has('artifactType'), action: 'pull', handler: listReferrers },
  { id: 'end-12a', method: 'GET', pattern: REFERRERS, action: 'pull', handler: listReferrers },
]

export interface RouteMatch {
  route: Route
  name: string
  params: Record<string, string>
}

/**
 * Finds the row for a request path (without query). Throws NAME_INVALID for a name outside the
 * grammar, UNSUPPORTED (405) for a known path with another method, and a 404 for an unknown path.
 */
export function matchRoute (method: string, pathname: string, query: URLSearchParams, routes: readonly Route[] = ROUTES): RouteMatch {
  const allowed = new Set<string>()
  for (const route of routes) {
    const m = route.pattern.exec(pathname)
    if (m === null) continue
    if (route.method !== method) { allowed.add(route.method); continue }
    if (route.when !== undefined && !route.when(query)) continue
    const params: Record<string, string> = {}
    for (const [k, v] of Object.entries(m.groups ?? {})) params[k] = decode(v)
    const name = params.name === undefined ? '' : assertName(params.name)
    delete params.name
    return { route, name, params }
  }
  if (allowed.size > 0) throw new OciError('UNSUPPORTED', `method ${method} not allowed here`, { headers: { allow: [...allowed].join(', ') } })
  throw new OciError('NAME_UNKNOWN', 'no such endpoint', { status: 404, detail: { path: pathname.slice(0, 300) } })
}

function decode (s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s // a malformed escape stays as is and fails validation
  }
}

export interface DispatchOptions {
  storage: RegistryStorage
  log: Logger
  authorize?: Authorizer
  basePath?: string
  mountSource?: MountSource
}

/**
 * Answers one request completely: match, authorize, run the handler, and write any error as the
 * spec's JSON body. Errors after the response started (a client gone mid-stream) end the socket.
 */
export async function dispatch (req: IncomingMessage, res: ServerResponse, opts: DispatchOptions): Promise<void> {
  const basePath = opts.basePath ?? ''
  // spec: "Docker-Distribution-API-Version: registry/2.0" tells docker clients this is a v2 registry.
  res.setHeader('docker-distribution-api-version', 'registry/2.0')
  try {
    // The raw path, not WHATWG URL's: it would resolve `a/../b` to `b` instead of refusing the name.
    const raw = req.url ?? '/'
    const q = raw.indexOf('?')
    let pathname = q === -1 ? raw : raw.slice(0, q)
    const query = new URLSearchParams(q === -1 ? '' : raw.slice(q + 1))
    if (basePath !== '' && pathname.startsWith(basePath)) pathname = pathname.slice(basePath.length)
    const { route, name, params } = matchRoute(req.method ?? 'GET', pathname, query)
    const authorize = async (access: { action: Action, name?: string }): Promise<void> => { await opts.authorize?.(req, access) }
    await authorize({ action: route.action, ...(name !== '' ? { name } : {}) })
    const ctx: RequestContext = { req, res, name, params, query, basePath, storage: opts.storage, log: opts.log, authorize, mountSource: opts.mountSource }
    await route.handler(ctx)
  } catch (err) {
    if (res.headersSent || (req.destroyed && !req.complete)) {
      // The client went away mid-body or mid-response: nothing can be told to it.
      opts.log.debug({ err, method: req.method, url: loggablePath(req.url) }, 'hosted registry: request aborted')
      res.destroy()
      return
    }
    const oci = err instanceof OciError ? err : isStorageFull(err) ? storageFull(err, opts.log, req) : internalError(err, opts.log, req)
    // A body we did not read would have to be drained before the connection can be reused.
    if (hasBody(req) && !req.complete) res.setHeader('connection', 'close')
    writeOciError(res, oci, req.method)
  }
}

// Not a bug of ours: say what is wrong (507 Insufficient Storage) so the operator and the client know.
function storageFull (err: unknown, log: Logger, req: IncomingMessage): OciError {
  log.warn({ err: (err as Error).message, method: req.method, url: loggablePath(req.url) }, 'hosted registry: storage full, request refused')
  return new OciError('UNAVAILABLE', 'registry storage is full', { status: 507, detail: { reason: (err as NodeJS.ErrnoException).code } })
}

function internalError (err: unknown, log: Logger, req: IncomingMessage): OciError {
  log.error({ err, method: req.method, url: loggablePath(req.url) }, 'hosted registry: internal error')
  return new OciError('UNAVAILABLE', 'internal error', { status: 500 })
}
