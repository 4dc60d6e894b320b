/** Small response and request helpers shared by the hosted-registry handlers. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { OciError } from '../errors.js'

/** A path below our base (Location and Link headers are relative, so they work through any Host). */
export function pathOf (basePath: string, path: string): string {
  return `${basePath}${path}`
}

/** True when the request carries a body (a non-zero Content-Length, or a chunked one). */
export function hasBody (req: IncomingMessage): boolean {
  const len = req.headers['content-length']
  if (len !== undefined) return Number(len) > 0
  return req.headers['transfer-encoding'] !== undefined
}

/** The declared Content-Length, or undefined when absent (chunked). Throws on a malformed one. */
export function contentLength (req: IncomingMessage): number | undefined {
  const len = req.headers['content-length']
  if (len === undefined) return undefined
  if (!/^\d+$/.test(len)) throw new OciError('SIZE_INVALID', 'invalid Content-Length')
  return Number(len)
}

/**
 * Reads a body that must fit in memory (manifests). Over `limit` bytes: spec (end-7) 413, with
 * MANIFEST_INVALID, without reading further.
 */
export async function readLimitedBody (req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = (): OciError => new OciError('MANIFEST_INVALID', `manifest larger than ${limit} bytes`, { status: 413, detail: { limit } })
  const declared = contentLength(req)
  if (declared !== undefined && declared > limit) throw tooLarge()
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > limit) throw tooLarge()
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

/** Writes a complete response with no body (HEAD, 201/202/204 answers). */
export function sendEmpty (res: ServerResponse, status: number, headers: Record<string, string | number | string[]>): void {
  res.writeHead(status, status === 204 ? headers : { ...headers, 'content-length': 0 })
  res.end()
}

/** Writes a JSON body (HEAD gets the headers only). */
export function sendJson (res: ServerResponse, method: string | undefined, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', ...headers, 'content-length': Buffer.byteLength(text) })
  res.end(method === 'HEAD' ? undefined : text)
}

/**
 * Parses the `n` / `last` pagination parameters (spec: end-8b; distribution's catalog). `n` must be
 * a non-negative integer.
 */
export function paginationOf (query: URLSearchParams): { n?: number, last?: string } {
  const rawN = query.get('n')
  let n: number | undefined
  if (rawN !== null && rawN !== '') {
    if (!/^\d+$/.test(rawN) || !Number.isSafeInteger(Number(rawN))) throw new OciError('PAGINATION_NUMBER_INVALID', undefined, { detail: { n: rawN.slice(0, 50) } })
    n = Number(rawN)
  }
  const last = query.get('last') ?? undefined
  return { n, last: last === '' ? undefined : last }
}

/**
 * One page of a lexically sorted list: entries after `last`, at most `n`. `next` is the `last` to
 * ask for the following page, when there is one (spec: never when n is 0).
 */
export function paginate (sorted: string[], opts: { n?: number, last?: string }): { page: string[], next?: string } {
  const after = opts.last === undefined ? sorted : sorted.filter(x => x > (opts.last as string))
  if (opts.n === undefined) return { page: after }
  const page = after.slice(0, opts.n)
  const next = opts.n > 0 && after.length > page.length ? page[page.length - 1] : undefined
  return { page, next }
}
