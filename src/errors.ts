/**
 * Errors, in two families, each with one table and one serialiser:
 *
 * - OCI registry errors (spec: "Error Codes"), thrown by registry and mirror handlers and written
 *   as `{"errors":[{code,message,detail}]}` by `writeOciError`, in one place.
 * - Transport errors on the proxy door (`ProxyError`), written as a plain-text one-line reason;
 *   `proxyErrorFromErrno` maps a socket/undici error to 502/504 with a sentence saying what failed.
 */
import type { ServerResponse } from 'node:http'

export const OCI_ERRORS = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, message: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_BLOB_UNKNOWN: { status: 404, message: 'manifest references a manifest or blob unknown to registry' },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown to registry' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
  // Not in the spec's table but used by distribution for a Range/Content-Range that cannot be satisfied.
  RANGE_INVALID: { status: 416, message: 'invalid content range' },
  // distribution's code for a bad `n` on tags list and catalog pagination.
  PAGINATION_NUMBER_INVALID: { status: 400, message: 'invalid number of results requested' },
  UNAVAILABLE: { status: 503, message: 'service unavailable' },
} as const

export type OciErrorCode = keyof typeof OCI_ERRORS

export class OciError extends Error {
  readonly code: OciErrorCode
  readonly status: number
  readonly detail: unknown
  readonly headers: Record<string, string>

  constructor (code: OciErrorCode, message?: string, opts: { detail?: unknown, status?: number, headers?: Record<string, string> } = {}) {
    super(message ?? OCI_ERRORS[code].message)
    this.name = 'OciError'
    this.code = code
    this.status = opts.status ?? OCI_ERRORS[code].status
    this.detail = opts.detail
    this.headers = opts.headers ?? {}
  }
}

const STORAGE_FULL = new Set(['ENOSPC', 'EDQUOT', 'EFBIG'])

/** A write error meaning "no room left" (disk full, quota, file size limit), not a broken disk. */
export function isStorageFull (err: unknown): boolean {
  return STORAGE_FULL.has((err as NodeJS.ErrnoException)?.code ?? '')
}

/** The one serialiser of OCI errors. HEAD responses get the status and headers but no body. */
export function writeOciError (res: ServerResponse, err: OciError, method = 'GET'): void {
  if (res.headersSent) { res.destroy(err); return }
  const body = JSON.stringify({ errors: [{ code: err.code, message: err.message, detail: err.detail ?? null }] })
  res.writeHead(err.status, {
    ...err.headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'docker-distribution-api-version': 'registry/2.0',
  })
  res.end(method === 'HEAD' ? undefined : body)
}

/** A transport-level failure on the proxy door, answered with a one-line plain-text reason. */
export class ProxyError extends Error {
  readonly status: number
  readonly code: string

  constructor (status: number, code: string, message: string, opts: { cause?: unknown } = {}) {
    super(message, { cause: opts.cause })
    this.name = 'ProxyError'
    this.status = status
    this.code = code
  }
}

// errno/undici code → [status, our code, what happened]; proxy-chain's statuses.ts is the model.
const ERRNO_TABLE: Record<string, [number, string, string]> = {
  ECONNREFUSED: [502, 'ERR_UPSTREAM_REFUSED', 'connection refused'],
  ECONNRESET: [502, 'ERR_UPSTREAM_RESET', 'connection reset'],
  EPIPE: [502, 'ERR_UPSTREAM_RESET', 'connection closed while sending'],
  ENOTFOUND: [502, 'ERR_UPSTREAM_DNS', 'host name not found'],
  EAI_AGAIN: [502, 'ERR_UPSTREAM_DNS', 'temporary DNS failure'],
  EHOSTUNREACH: [502, 'ERR_UPSTREAM_UNREACHABLE', 'host unreachable'],
  ENETUNREACH: [502, 'ERR_UPSTREAM_UNREACHABLE', 'network unreachable'],
  ETIMEDOUT: [504, 'ERR_UPSTREAM_TIMEOUT', 'connection timed out'],
  UND_ERR_CONNECT_TIMEOUT: [504, 'ERR_UPSTREAM_TIMEOUT', 'connect timed out'],
  UND_ERR_HEADERS_TIMEOUT: [504, 'ERR_UPSTREAM_TIMEOUT', 'timed out waiting for response headers'],
  UND_ERR_BODY_TIMEOUT: [504, 'ERR_UPSTREAM_TIMEOUT', 'timed out reading the response body'],
  UND_ERR_SOCKET: [502, 'ERR_UPSTREAM_RESET', 'connection closed unexpectedly'],
  UND_ERR_CLOSED: [502, 'ERR_UPSTREAM_RESET', 'connection closed'],
  DEPTH_ZERO_SELF_SIGNED_CERT: [502, 'ERR_UPSTREAM_TLS', 'TLS: self-signed certificate'],
  SELF_SIGNED_CERT_IN_CHAIN: [502, 'ERR_UPSTREAM_TLS', 'TLS: self-signed certificate in chain'],
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: [502, 'ERR_UPSTREAM_TLS', 'TLS: unknown certificate authority'],
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: [502, 'ERR_UPSTREAM_TLS', 'TLS: unknown certificate authority'],
  CERT_HAS_EXPIRED: [502, 'ERR_UPSTREAM_TLS', 'TLS: certificate has expired'],
  ERR_TLS_CERT_ALTNAME_INVALID: [502, 'ERR_UPSTREAM_TLS', 'TLS: certificate does not match the host name'],
}

function errnoOf (err: unknown): string | undefined {
  let e: any = err
  for (let i = 0; e != null && i < 4; i++) {
    if (typeof e.code === 'string' && (e.code in ERRNO_TABLE)) return e.code
    e = e.cause
  }
  return undefined
}

/** Maps any error met while talking to `target` to a ProxyError (502 by default, 504 for timeouts). */
export function proxyErrorFrom (err: unknown, target: string): ProxyError {
  if (err instanceof ProxyError) return err
  // A blob fill's own timeout (the upstream went quiet mid-body) says more than the errno would.
  if ((err as { code?: unknown })?.code === 'ERR_UPSTREAM_TIMEOUT') return new ProxyError(504, 'ERR_UPSTREAM_TIMEOUT', `upstream ${target}: ${(err as Error).message}`, { cause: err })
  const errno = errnoOf(err)
  const [status, code, what] = errno !== undefined ? ERRNO_TABLE[errno] : [502, 'ERR_UPSTREAM', (err as Error)?.message ?? String(err)]
  return new ProxyError(status, code, `upstream ${target}: ${what}`, { cause: err })
}

/** The one writer of ProxyErrors: a status and one line of text. */
export function writeProxyError (res: ServerResponse, err: ProxyError): void {
  if (res.headersSent) { res.destroy(err); return }
  const body = `${err.message}\n`
  res.writeHead(err.status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-crossdock-error': err.code })
  res.end(body)
}

/**
 * A ProxyError on whichever door the request came through: plain text on the proxy door, the OCI
 * error JSON on the registry door (so `docker pull` prints the reason), same status either way.
 */
export function writeDoorError (res: ServerResponse, err: ProxyError, door: 'proxy' | 'registry', method = 'GET'): void {
  if (door === 'proxy') { writeProxyError(res, err); return }
  writeOciError(res, new OciError('UNAVAILABLE', err.message, { status: err.status, detail: { code: err.code }, headers: { 'x-crossdock-error': err.code } }), method)
}

/** A configuration value that cannot be used; the message names the variable, the value and what is expected. */
export class ConfigError extends Error {
  /** For parse failures: what was read, so that a secret variable's value can be kept out of the message. */
  readonly detail?: { variable: string, value: string, expected: string }

  constructor (message: string, detail?: { variable: string, value: string, expected: string }) {
    super(message)
    this.name = 'ConfigError'
    this.detail = detail
  }
}
