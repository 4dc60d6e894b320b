/**
 * What both halves of the pull-through cache (pull-through.ts: blobs; pull-through-manifests.ts:
 * manifests) share: the request context they are handed, the X-Cache-Status vocabulary, the
 * headers passed upstream, and how an upstream answer is streamed back as it is.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Logger } from '../log.js'
import { markAbandoned } from '../observability/request-log.js'
import type { UpstreamRequester, UpstreamResponse } from '../upstream/upstream-client.js'
import { stripHopByHop, headerValue } from '../upstream/headers.js'
import { discardBody } from '../upstream/body.js'
import type { CacheStore } from '../cache/stores.js'
import type { Digest } from '../oci/digest.js'
import { isClientGone, sendStream } from '../util/send-stream.js'
import { DigestCheck } from './digest-check.js'
import type { ManifestTierConfig } from './manifest-tiers.js'
import type { MirrorContext, ImageRequest } from './mirror-router.js'
import { upstreamAuthorizationOf, type AccessContext, type AccessPolicy } from './access-policy.js'
import type { SegmentOptions } from '../upstream/segmented-body.js'
import type { Prefetcher } from './prefetch.js'

export type CacheStatus = 'HIT' | 'MISS' | 'JOINED' | 'STALE' | 'BYPASS'

export interface PullThroughOptions {
  /** config.cache: the ENABLE_MANIFEST_CACHE tiers. */
  manifestTiers: ManifestTierConfig
  log: Logger
  cache: CacheStore
  upstream: UpstreamRequester
  /** Who may be served cached items (default: everyone, as before access checks existed). */
  access?: AccessPolicy
  /** Fetches an image's blobs when its manifest passes (prefetch.ts); none: no prefetch. */
  prefetch?: Prefetcher
  /** Blob misses over several range requests (upstream/segmented-body.ts); none: one GET each. */
  segments?: SegmentOptions
}

/** What a handler needs of the request context (the router passes more). */
export type PullThroughContext = Pick<MirrorContext, 'host' | 'door'> & ImageRequest

/** What the access policy needs to know about a request. */
export function accessContext (req: RequestHeaders, ctx: PullThroughContext, reference = ctx.reference): AccessContext {
  return { host: ctx.host, repository: ctx.repository, kind: ctx.kind, reference, authorization: upstreamAuthorizationOf(req, ctx.door), accept: headerValue(req.headers, 'accept') }
}

/** The headers of the client's request that the upstream should see. */
export function upstreamHeaders (req: RequestHeaders, withRange = false): Record<string, string | string[]> {
  return pickHeaders(req.headers, ['authorization', 'accept', 'user-agent', ...(withRange ? ['range', 'if-none-match'] : [])])
}

/** What the upstream-facing helpers read of a client's request (a prefetch keeps only these). */
export type RequestHeaders = Pick<IncomingMessage, 'headers'>

export function pickHeaders (headers: IncomingMessage['headers'], names: string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const n of names) {
    const v = headers[n]
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

/**
 * Streams an upstream answer to the client as it is (status, end-to-end headers, body). With
 * `check`, a whole blob (200) is verified on the way (digest-check.ts).
 */
export async function sendAnswer (res: ServerResponse, answer: UpstreamResponse, method: string, status: CacheStatus, check?: Digest): Promise<void> {
  writeHead(res, answer.status, { ...stripHopByHop(answer.headers), ...cacheHeaders(status), 'x-crossdock-upstream-ms': String(Math.round(answer.ms)) })
  if (method === 'HEAD') { discardBody(answer.body); res.end(); return }
  let body: Readable = answer.body
  if (check !== undefined && answer.status === 200) {
    const length = headerValue(answer.headers, 'content-length')
    const checked = new DigestCheck(check, length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined)
    // Either side failing destroys both: the upstream body is never left half read.
    pipeline(answer.body, checked).catch(() => {})
    body = checked
  }
  try {
    await sendStream(body, res)
    res.end()
  } catch (err) {
    // The upstream broke off mid-body: an abort, never a clean end of a short body.
    if (!isClientGone(err) && !res.destroyed) markAbandoned(res, err)
    res.destroy()
  }
}

/**
 * writeHead through setHeader, so that the request log (request-log.ts reads `res.getHeader`) sees
 * X-Cache-Status: headers passed to `res.writeHead` directly are not visible to `getHeader`.
 */
export function writeHead (res: ServerResponse, status: number, headers: Record<string, string | string[] | number>): void {
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v)
  res.writeHead(status)
}
