/**
 * One JSON log line per request, written when the response is done (finished or aborted):
 * door, host, method, path, status, bytes, ms, cache status (from X-Cache-Status), upstream ms.
 * Bytes are counted as the body is written, so an aborted download logs what was really sent.
 *
 * The same line feeds an optional observer (the metrics, metrics.ts), so instrumentation needs no
 * hooks of its own in the request paths.
 *
 * Paths are logged through `loggablePath`: query values are kept only for the registry API's own
 * harmless keys; anything else (a token or signature some client put in a query) is redacted.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from '../log.js'

export interface RequestLogFields {
  door: 'proxy' | 'registry' | 'director'
  host?: string
  [extra: string]: unknown
}

/** What a request came to, as logged. */
export interface RequestLogLine extends RequestLogFields {
  method?: string
  path?: string
  status: number
  bytes: number
  ms: number
  cacheStatus?: string
  upstreamMs?: number
  aborted?: true
  /** Why crossdock aborted a response the client was still reading (an error code), if it did. */
  abandoned?: string
  remote?: string
}

const ABANDONED = new WeakMap<ServerResponse, { code: string, message: string, fields: Record<string, unknown> }>()

/**
 * Marks a response that crossdock is about to abort while its client is still there (a fill that
 * failed mid-body, an upstream that broke off): its log line goes out at warn with the reason, and
 * the metrics count it. A client that went away is not an abandonment.
 */
export function markAbandoned (res: ServerResponse, err: unknown, fields: Record<string, unknown> = {}): void {
  const e = err as { code?: unknown, message?: unknown } | undefined
  const code = typeof e?.code === 'string' ? e.code : 'ERR_BODY'
  ABANDONED.set(res, { code, message: typeof e?.message === 'string' ? e.message : String(err), fields })
}

/** Sees each request's line when it is done, and (`started`) its arrival. */
export interface RequestObserver {
  (line: RequestLogLine): void
  started?: (fields: RequestLogFields) => void
}

const ANNOTATIONS = new WeakMap<ServerResponse, Record<string, unknown>>()

/**
 * Fields a handler learns after arrival (the registry door's upstream host, the repository),
 * merged into the request's line: the line's fields are fixed when the request arrives.
 */
export function annotateRequest (res: ServerResponse, fields: Record<string, unknown>): void {
  ANNOTATIONS.set(res, { ...ANNOTATIONS.get(res), ...fields })
}

/** Query keys of the distribution API (and crossdock's `ns`) whose values are not secrets. */
const HARMLESS_QUERY_KEYS = new Set(['ns', 'n', 'last', 'digest', 'mount', 'from'])
const MAX_LOGGED_PATH = 2048

/** The request target as it may be logged: every query value but the harmless keys' is `[redacted]`. */
export function loggablePath (url: string | undefined): string | undefined {
  if (url === undefined) return undefined
  const q = url.indexOf('?')
  if (q < 0) return url.slice(0, MAX_LOGGED_PATH)
  const query = url.slice(q + 1).split('&').map(pair => {
    const eq = pair.indexOf('=')
    const key = eq < 0 ? pair : pair.slice(0, eq)
    let name: string
    try { name = decodeURIComponent(key.replace(/\+/g, ' ')) } catch { name = key }
    return HARMLESS_QUERY_KEYS.has(name) ? pair : eq < 0 ? pair : `${key}=[redacted]`
  })
  return `${url.slice(0, q)}?${query.join('&')}`.slice(0, MAX_LOGGED_PATH)
}

/** Attaches the per-request log line to `res`; call once when the request arrives. */
export function logRequest (log: Logger, req: IncomingMessage, res: ServerResponse, fields: RequestLogFields, observe?: RequestObserver): void {
  const started = performance.now()
  observe?.started?.(fields)
  // Read now: by the time the response closes, req.socket may already be detached.
  const remote = req.socket?.remoteAddress
  let bytes = 0
  const write = res.write.bind(res) as (...a: unknown[]) => boolean
  const end = res.end.bind(res) as (...a: unknown[]) => ServerResponse
  const count = (chunk: unknown): void => {
    if (typeof chunk === 'string') bytes += Buffer.byteLength(chunk)
    else if (chunk instanceof Uint8Array) bytes += chunk.byteLength
  }
  res.write = ((chunk: unknown, ...rest: unknown[]) => { count(chunk); return write(chunk, ...rest) }) as typeof res.write
  res.end = ((chunk?: unknown, ...rest: unknown[]) => { if (typeof chunk !== 'function') count(chunk); return end(chunk, ...rest) }) as typeof res.end
  res.once('close', () => {
    const cacheStatus = res.getHeader('x-cache-status')
    const upstreamMs = res.getHeader('x-crossdock-upstream-ms')
    const line: RequestLogLine = {
      ...fields,
      ...ANNOTATIONS.get(res),
      method: req.method,
      path: loggablePath(req.url),
      status: res.statusCode,
      bytes,
      ms: Math.round(performance.now() - started),
      cacheStatus: cacheStatus === undefined ? undefined : String(cacheStatus),
      upstreamMs: upstreamMs === undefined ? undefined : Number(upstreamMs),
      aborted: res.writableFinished ? undefined : true,
      remote,
    }
    const abandoned = ABANDONED.get(res)
    if (abandoned !== undefined) {
      line.abandoned = abandoned.code
      log.warn({ ...line, ...abandoned.fields, err: abandoned.message }, 'request abandoned: connection aborted mid-body')
    } else {
      log.info(line, 'request')
    }
    observe?.(line)
  })
}
