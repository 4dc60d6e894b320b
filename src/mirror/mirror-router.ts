/**
 * What a request for upstream host H means, whichever door it came through:
 *
 *   GET|HEAD /v2/<name>/blobs/<digest>        ─► pull-through cache (when one is plugged in)
 *   GET|HEAD /v2/<name>/manifests/<reference> ─► pull-through cache (when one is plugged in)
 *   POST|PUT|PATCH|DELETE /v2/…               ─► upstream, streamed, uncached, if pushes are allowed;
 *                                                 else 405 UNSUPPORTED saying so
 *   anything else (/v2/, tags, token realm…)  ─► upstream, unchanged (passthrough)
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { OciError, writeOciError } from '../errors.js'
import type { UpstreamRequester } from '../upstream/upstream-client.js'
import { passthrough } from './passthrough.js'
import { annotateRequest } from '../observability/request-log.js'

export interface MirrorContext {
  /** The upstream host (`registry-1.docker.io`, `ghcr.io`, `host:port`). */
  host: string
  door: 'proxy' | 'registry'
  /** Path of the request as the upstream should see it (the registry door strips its prefix). */
  path: string
  /** May writes pass through to the upstream? (ALLOW_PUSH on the proxy door.) */
  allowPush: boolean
}

export interface ImageRequest {
  kind: 'blob' | 'manifest'
  repository: string
  reference: string
}

/** A cache in front of blob and manifest reads; it answers the request completely. */
export interface PullThroughHandler {
  handle: (req: IncomingMessage, res: ServerResponse, ctx: MirrorContext & ImageRequest) => Promise<void>
}

const IMAGE_PATH = /^\/v2\/(.+)\/(blobs|manifests)\/([^/?]+)(?:\?.*)?$/
const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

export function parseImagePath (path: string): ImageRequest | undefined {
  const m = IMAGE_PATH.exec(path)
  if (m === null || m[1].includes('/blobs/uploads')) return undefined
  return { kind: m[2] === 'blobs' ? 'blob' : 'manifest', repository: m[1], reference: decodeURIComponent(m[3]) }
}

/** The inverse of parseImagePath: `/v2/<repository>/{blobs,manifests}/<reference>` (`:` left as is). */
export function upstreamPath (image: ImageRequest, reference = image.reference): string {
  return `/v2/${image.repository}/${image.kind === 'blob' ? 'blobs' : 'manifests'}/${encodeURIComponent(reference).replace(/%3A/gi, ':')}`
}

export class MirrorRouter {
  constructor (private readonly upstream: UpstreamRequester, private readonly pullThrough?: PullThroughHandler) {}

  async handle (req: IncomingMessage, res: ServerResponse, ctx: MirrorContext): Promise<void> {
    const method = req.method ?? 'GET'
    if (ctx.path.startsWith('/v2/') && WRITES.has(method) && !ctx.allowPush) {
      const where = ctx.door === 'proxy'
        ? 'set ALLOW_PUSH=true to pass pushes through to the upstream'
        : 'push to a hosted repository name instead (one without an upstream host prefix)'
      writeOciError(res, new OciError('UNSUPPORTED', `crossdock: ${method} to upstream ${ctx.host} is not allowed; ${where}`), method)
      return
    }
    const image = (method === 'GET' || method === 'HEAD') ? parseImagePath(ctx.path) : undefined
    // The registry door learns the upstream only here; metrics label by it, the status page ranks repositories.
    annotateRequest(res, { host: ctx.host, repository: image?.repository })
    if (image !== undefined && this.pullThrough !== undefined) {
      await this.pullThrough.handle(req, res, { ...ctx, ...image })
      return
    }
    req.url = ctx.path
    // spec: end-1. The ping passes through so the upstream's auth challenge reaches the client, but
    // it never depends on upstream health: a down or overloaded upstream must not stop clients
    // (skopeo pings first) from pulling what the cache holds.
    const ping = (method === 'GET' || method === 'HEAD') && /^\/v2\/?(\?.*)?$/.test(ctx.path)
    await passthrough(this.upstream, req, res, ctx.host, ping ? { whenUnavailable: answerPing } : {})
  }
}

function answerPing (res: ServerResponse): void {
  res.setHeader('x-cache-status', 'STALE')
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': 2, 'docker-distribution-api-version': 'registry/2.0' })
  res.end(res.req?.method === 'HEAD' ? undefined : '{}')
}
