/**
 * The caching handlers of the pull-through mirror: GET/HEAD of blobs and manifests for upstream H.
 *
 * Blobs (key: digest):
 *   cached ───────────────────────────────► disk (Range, HEAD)                         HIT
 *   in flight ────────────────────────────► TailReader on the staging file             JOINED
 *   else GET upstream (redirects followed) ─► 200 → BlobFill ─► TailReader             MISS
 *                                           └► too big / no room → streamed through    BYPASS
 *                                           └► non-200 → the upstream's answer as is   MISS
 *   HEAD never becomes an upstream GET.
 *
 * Manifests:
 *   by digest: cached → HIT; else GET upstream, verify the digest, cache with its media type.
 *   by tag: ENABLE_MANIFEST_CACHE tier fresh → HIT without asking upstream. Otherwise one shared
 *     upstream HEAD per (host, repository, tag, Accept) → Docker-Content-Digest; cached → HIT
 *     (rpardini header: REVALIDATED); else GET by digest → cache → MISS. HEAD failing (network,
 *     timeout, 429, 5xx) with a known tag → served from cache, STALE; with an unknown tag the
 *     upstream's answer reaches the client unchanged.
 *
 * Access (access-policy.ts): before anything cached or being filled is served (HIT, JOINED, STALE, a
 * tag resolved by someone else's HEAD), `access.canServe` must say yes, so an image that the upstream
 * serves only with credentials is not handed to clients it would refuse; every upstream 200 this
 * module fetched with a client's Authorization is reported with `access.recordFetch`.
 *
 * Response headers: X-Cache-Status (HIT, MISS, JOINED, STALE, BYPASS) and rpardini's
 * X-Docker-Registry-Proxy-Cache-Upstream-Status; the request log line (request-log.ts) reads them.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Config } from '../config/index.js'
import type { Logger } from '../log.js'
import { proxyErrorFrom, writeProxyError } from '../errors.js'
import { SingleFlight } from '../util/single-flight.js'
import type { UpstreamClient, UpstreamResponse } from '../upstream/upstream-client.js'
import { stripHopByHop, headerValue } from '../upstream/headers.js'
import { discardBody } from '../upstream/body.js'
import type { CacheStore } from '../cache/cache-store.js'
import type { BlobFill } from '../cache/blob-fill.js'
import { TailReader } from '../cache/tail-reader.js'
import { sendFile } from '../util/file-sender.js'
import { parseByteRange, type ByteRange } from '../cache/byte-range.js'
import { parseDigest } from '../cache/cache-paths.js'
import { upstreamPath, type PullThroughHandler, type MirrorContext, type ImageRequest } from './mirror-router.js'
import { createManifestHandler } from './pull-through-manifests.js'
import { ALLOW_ALL, admit, upstreamAuthorizationOf, type AccessContext, type AccessPolicy } from './access-policy.js'

export type CacheStatus = 'HIT' | 'MISS' | 'JOINED' | 'STALE' | 'BYPASS'

export interface PullThroughOptions {
  config: Config
  log: Logger
  cache: CacheStore
  upstream: Pick<UpstreamClient, 'request'>
  /** Who may be served cached items (default: everyone, as before access checks existed). */
  access?: AccessPolicy
}

/** What a handler needs of the request context (the router passes more). */
export type PullThroughContext = Pick<MirrorContext, 'host' | 'door'> & ImageRequest

type BlobOpen = { kind: 'fill', fill: BlobFill } | { kind: 'answer', answer: UpstreamResponse } | { kind: 'bypass', answer: UpstreamResponse } | { kind: 'cached' }

export function createPullThrough (opts: PullThroughOptions): PullThroughHandler {
  const { cache, upstream } = opts
  const access = opts.access ?? ALLOW_ALL
  const log = opts.log.child({ module: 'pull-through' })
  const opens = new SingleFlight<BlobOpen>()
  const manifests = createManifestHandler({ ...opts, log })

  async function handle (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext): Promise<void> {
    try {
      if (ctx.kind === 'blob') await blob(req, res, ctx)
      else await manifests.handle(req, res, ctx)
    } catch (err) {
      if (!res.headersSent) writeProxyError(res, proxyErrorFrom(err, ctx.host))
      else res.destroy(err as Error)
    }
  }

  async function blob (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext): Promise<void> {
    const method = req.method === 'HEAD' ? 'HEAD' : 'GET'
    const d = parseDigest(ctx.reference)
    // A digest we cannot verify (or not a digest at all) is not cached: the upstream answers.
    if (d === undefined) { await forward(req, res, ctx, 'BYPASS'); return }
    for (let attempt = 0; attempt < 3; attempt++) {
      const opened = await cache.openBlob(d.digest)
      if (opened !== undefined) {
        const { blob, fh } = opened
        if (!await admit(access, req, res, accessContext(req, ctx))) { void fh.close(); return }
        await serveBody(req, res, { status: 'HIT', size: blob.size, digest: d.digest, mediaType: blob.mediaType },
          async (out, range) => { await sendFile(fh, out, range) }, () => { void fh.close() })
        return
      }
      const inflight = cache.inflight(d.digest)
      if (inflight !== undefined) {
        if (await admit(access, req, res, accessContext(req, ctx))) await serveFill(req, res, inflight, 'JOINED')
        return
      }
      if (method === 'HEAD') { await forward(req, res, ctx, 'MISS'); return }

      let leader = false
      const result = await opens.run(d.digest, async () => { leader = true; return await openFill(req, ctx, d.digest) })
      if (result.kind === 'cached') continue
      if (result.kind === 'fill') {
        if (leader || await admit(access, req, res, accessContext(req, ctx))) await serveFill(req, res, result.fill, leader ? 'MISS' : 'JOINED')
        return
      }
      if (!leader) { await forward(req, res, ctx, 'MISS'); return } // the leader's answer was not shareable
      if (result.kind === 'bypass') { await sendAnswer(res, result.answer, 'GET', 'BYPASS'); return }
      await sendAnswer(res, result.answer, 'GET', 'MISS')
      return
    }
    await forward(req, res, ctx, 'BYPASS')
  }

  /** The one upstream GET of a blob miss; a 200 becomes the cache's fill. */
  async function openFill (req: IncomingMessage, ctx: PullThroughContext, digest: string): Promise<BlobOpen> {
    if (cache.statBlob(digest) !== undefined) return { kind: 'cached' }
    const answer = await upstream.request({ host: ctx.host, method: 'GET', path: upstreamPath(ctx), headers: upstreamHeaders(req), followRedirects: true })
    access.recordFetch({ ...accessContext(req, ctx), status: answer.status })
    if (answer.status !== 200) return { kind: 'answer', answer }
    const length = headerValue(answer.headers, 'content-length')
    const expectedSize = length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined
    // Another pull-through over the same cache (the registry door's, with its own upstream client
    // and single-flight) may have started this digest while our GET was waiting for headers.
    const other = cache.inflight(digest)
    if (other !== undefined) { discardBody(answer.body); return { kind: 'fill', fill: other } }
    const started = cache.beginBlobFill(digest, answer.body, { expectedSize, mediaType: headerValue(answer.headers, 'content-type'), origin: { host: ctx.host, repository: ctx.repository } })
    if ('bypass' in started) {
      log.warn({ host: ctx.host, repository: ctx.repository, digest, size: expectedSize, reason: started.bypass }, 'blob streamed through uncached')
      return { kind: 'bypass', answer }
    }
    return { kind: 'fill', fill: started.fill }
  }

  async function serveFill (req: IncomingMessage, res: ServerResponse, fill: BlobFill, status: CacheStatus): Promise<void> {
    await serveBody(req, res, { status, size: fill.size, digest: fill.digest.digest, mediaType: fill.mediaType },
      async (out, range) => { await pipeline(new TailReader(fill, range?.start ?? 0, range?.end), out, { end: false }) })
  }

  /**
   * Answers a blob request from the cache (or a fill): HEAD, 200, 206 for one satisfiable range, 416
   * for an unsatisfiable one. `send` writes the bytes (or the range) into the response without
   * ending it; it rejects when they cannot all be sent.
   */
  async function serveBody (req: IncomingMessage, res: ServerResponse, what: { status: CacheStatus, size: number | undefined, digest: string, mediaType?: string }, send: (out: Writable, range?: ByteRange) => Promise<void>, release?: () => void): Promise<void> {
    const headers: Record<string, string | number> = {
      'content-type': what.mediaType ?? 'application/octet-stream',
      'docker-content-digest': what.digest,
      etag: `"${what.digest}"`,
      ...cacheHeaders(what.status),
    }
    const size = what.size
    let range: ByteRange | undefined
    let code = 200
    if (size !== undefined) {
      headers['accept-ranges'] = 'bytes'
      const asked = parseByteRange(headerValue(req.headers, 'range'), size)
      if (asked === 'unsatisfiable') {
        release?.()
        writeHead(res, 416, { ...headers, 'content-range': `bytes */${size}`, 'content-length': 0 })
        res.end()
        return
      }
      if (asked !== undefined) { range = asked; code = 206; headers['content-range'] = `bytes ${asked.start}-${asked.end}/${size}` }
      headers['content-length'] = range !== undefined ? range.end - range.start + 1 : size
    }
    if (req.method === 'HEAD') {
      release?.()
      writeHead(res, code, headers)
      res.end()
      return
    }
    writeHead(res, code, headers)
    try {
      await send(res, range)
      res.end()
    } catch {
      // The fill failed or the client left: abort, never a clean end of a short body.
      res.destroy()
    } finally {
      release?.()
    }
  }

  /** Sends the request upstream unchanged (redirects followed) and streams the answer back. */
  async function forward (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext, status: CacheStatus): Promise<void> {
    const method = req.method === 'HEAD' ? 'HEAD' : 'GET'
    const answer = await upstream.request({ host: ctx.host, method, path: upstreamPath(ctx), headers: upstreamHeaders(req, true), followRedirects: true })
    await sendAnswer(res, answer, method, status)
  }

  return { handle }
}

/** What the access policy needs to know about a request. */
export function accessContext (req: IncomingMessage, ctx: PullThroughContext, reference = ctx.reference): AccessContext {
  return { host: ctx.host, repository: ctx.repository, kind: ctx.kind, reference, authorization: upstreamAuthorizationOf(req, ctx.door), accept: headerValue(req.headers, 'accept') }
}

/** The headers of the client's request that the upstream should see. */
export function upstreamHeaders (req: IncomingMessage, withRange = false): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  const names = ['authorization', 'accept', 'user-agent', ...(withRange ? ['range', 'if-none-match'] : [])]
  for (const n of names) {
    const v = req.headers[n]
    if (v !== undefined) out[n] = v
  }
  return out
}

/** X-Cache-Status and rpardini's header (nginx's $upstream_cache_status vocabulary). */
export function cacheHeaders (status: CacheStatus, upstreamStatus?: string): Record<string, string> {
  return {
    'x-cache-status': status,
    'x-docker-registry-proxy-cache-upstream-status': upstreamStatus ?? (status === 'JOINED' ? 'MISS' : status),
  }
}

/** Streams an upstream answer to the client as it is (status, end-to-end headers, body). */
export async function sendAnswer (res: ServerResponse, answer: UpstreamResponse, method: string, status: CacheStatus): Promise<void> {
  writeHead(res, answer.status, { ...stripHopByHop(answer.headers), ...cacheHeaders(status), 'x-crossdock-upstream-ms': String(Math.round(answer.ms)) })
  if (method === 'HEAD') { discardBody(answer.body); res.end(); return }
  await pipeline(answer.body, res).catch(() => {})
}

/**
 * writeHead through setHeader, so that the request log (request-log.ts reads `res.getHeader`) sees
 * X-Cache-Status: headers passed to `res.writeHead` directly are not visible to `getHeader`.
 */
export function writeHead (res: ServerResponse, status: number, headers: Record<string, string | string[] | number>): void {
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v)
  res.writeHead(status)
}
