/**
 * Manifests through the pull-through cache (the blob half is pull-through.ts).
 *
 *   GET|HEAD …/manifests/<digest> ─► cache ─hit─► HIT
 *                                    └─miss─► GET upstream (one per digest in flight) ─► verify ─► cache ─► MISS
 *   GET|HEAD …/manifests/<tag>
 *     tier fresh (ENABLE_MANIFEST_CACHE) ─────────────────────────────────────► HIT, no upstream
 *     else HEAD upstream with the client's Accept (one per host/repo/tag/Accept in flight)
 *       ├─ 200 + digest cached ─────────────────────────────────────────────────► HIT (REVALIDATED)
 *       ├─ 200 + not cached ─► HEAD: the upstream's headers; GET: GET by digest ─► MISS
 *       ├─ error / timeout / 429 / 5xx + tag known ────────────────────────────► STALE
 *       └─ anything else ─► the upstream's answer, unchanged (a GET asks again with GET for its body)
 *
 * Every cached answer (HIT, STALE, JOINED, and a tag resolved by another client's HEAD) first asks
 * the access policy (access-policy.ts); answers fetched with the client's own Authorization are
 * reported to it, so the same credential's next hit needs no check.
 *
 * Manifests and error answers are small, so upstream answers here are read whole (bounded by
 * MAX_MANIFEST_BYTES) and can be shared by every client waiting on the same request.
 */
import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { ProxyError } from '../errors.js'
import type { Logger } from '../log.js'
import { SingleFlight } from '../util/single-flight.js'
import { headerValue, stripHopByHop } from '../upstream/headers.js'
import { discardBody, readBody } from '../upstream/body.js'
import { MAX_MANIFEST_BYTES } from '../cache/cacache-manifest-store.js'
import type { CachedManifest } from '../cache/stores.js'
import { tagKey, type TagRecord, type TagRef } from '../cache/tag-key.js'
import { findTag } from '../cache/tag-fallback.js'
import { tryParseDigest, type Digest } from '../oci/digest.js'
import { mediaTypeOf } from '../oci/media-types.js'
import { manifestTier } from './manifest-tiers.js'
import {
  accessContext, cacheHeaders, sendAnswer, upstreamHeaders, writeHead,
  type CacheStatus, type PullThroughContext, type PullThroughOptions,
} from './pull-through-answers.js'
import { ALLOW_ALL, admit } from './access-policy.js'
import { upstreamPath } from './mirror-router.js'

/** An upstream answer read whole. */
interface Buffered {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  ms: number
  /** For a 200 manifest: the digest it hashes to, and whether the cache took it. */
  digest?: Digest
  stored?: boolean
}

interface HeadOutcome {
  answer?: Omit<Buffered, 'body'>
  error?: unknown
  /** The Authorization the HEAD was sent with (an auth failure is not shared with other credentials). */
  authorization?: string
}

/** Told of every manifest answered 200 to a client's GET (prefetch.ts starts on it). */
export type ManifestPassed = (req: IncomingMessage, ctx: PullThroughContext, m: { bytes: Buffer, mediaType: string }) => void

export function createManifestHandler (opts: PullThroughOptions & { onPassed?: ManifestPassed }) {
  const { cache, upstream, manifestTiers, log } = opts
  const access = opts.access ?? ALLOW_ALL
  const allowed = async (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext, reference?: string): Promise<boolean> =>
    await admit(access, req, res, accessContext(req, ctx, reference))
  const heads = new SingleFlight<HeadOutcome>()
  const gets = new SingleFlight<Buffered>()
  const serve = (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext, m: CachedManifest, status: CacheStatus, upstreamStatus?: string): void => {
    serveManifest(req, res, m, status, upstreamStatus)
    if (req.method === 'GET') opts.onPassed?.(req, ctx, { bytes: m.bytes, mediaType: m.mediaType })
  }
  const sendGot = (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext, got: Buffered, status: CacheStatus): void => {
    sendFetched(req, res, got, status)
    if (req.method === 'GET' && got.status === 200) opts.onPassed?.(req, ctx, { bytes: got.body, mediaType: contentTypeOf(got.headers) })
  }

  async function handle (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext): Promise<void> {
    const d = tryParseDigest(ctx.reference)
    if (d !== undefined) { await byDigest(req, res, ctx, d); return }
    if (ctx.reference.includes(':')) { await forward(req, res, ctx, 'BYPASS'); return } // a digest we cannot verify
    await byTag(req, res, ctx)
  }

  async function byDigest (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext, digest: Digest): Promise<void> {
    const cached = await cache.manifests.get(digest)
    if (cached !== undefined) {
      if (await allowed(req, res, ctx)) serve(req, res, ctx, cached, 'HIT')
      return
    }
    if (req.method === 'HEAD') { await forward(req, res, ctx, 'MISS'); return }
    const { got, leader } = await fetchShared(req, ctx, digest.value)
    if (leader || got.status !== 200 || await allowed(req, res, ctx)) sendGot(req, res, ctx, got, leader ? 'MISS' : 'JOINED')
  }

  async function byTag (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext): Promise<void> {
    const ref: TagRef = { host: ctx.host, repository: ctx.repository, tag: ctx.reference, accept: req.headers.accept }
    const known = await findTag(cache.tags, ref)
    const { ttlMs } = manifestTier(manifestTiers, ctx.reference)
    if (known !== undefined && ttlMs > 0 && Date.now() - known.fetchedAt < ttlMs) {
      const m = await manifestOf(known)
      if (m !== undefined) {
        if (await allowed(req, res, ctx)) serve(req, res, ctx, m, 'HIT')
        return
      }
    }

    const outcome = await headTag(req, ctx, ref)
    const answer = outcome.answer
    if (answer === undefined || answer.status === 429 || answer.status >= 500) {
      const m = known !== undefined ? await manifestOf(known) : undefined
      if (m !== undefined) {
        if (!await allowed(req, res, ctx)) return
        log.warn({ host: ctx.host, repository: ctx.repository, tag: ctx.reference, upstreamStatus: answer?.status, err: (outcome.error as Error | undefined)?.message }, 'upstream failed; tag served from cache (STALE)')
        serveManifest(req, res, m, 'STALE')
        return
      }
      if (answer === undefined) throw outcome.error
    }
    if (answer.status !== 200) { await answerUnchanged(req, res, ctx, answer); return }
    // The HEAD is the access check when it carried this client's credentials; a HEAD shared with
    // another client's credentials proves nothing about this one.
    const own = accessContext(req, ctx)
    if (outcome.authorization === headerValue(req.headers, 'authorization')) access.recordFetch({ ...own, status: 200 })
    else if (!await admit(access, req, res, own)) return

    const digest = tryParseDigest(headerValue(answer.headers, 'docker-content-digest') ?? '')
    if (digest === undefined) {
      // No usable Docker-Content-Digest on the HEAD: the GET by tag tells (and is hashed here).
      if (req.method === 'HEAD') { sendHead(res, answer, 'MISS'); return }
      const { got, leader } = await fetchShared(req, ctx, ctx.reference)
      if (got.stored === true && got.digest !== undefined) await remember(ref, got.digest, got)
      if (leader || got.status !== 200 || await allowed(req, res, ctx)) sendGot(req, res, ctx, got, leader ? 'MISS' : 'JOINED')
      return
    }
    const cached = await cache.manifests.get(digest)
    if (cached !== undefined) {
      await remember(ref, digest, { headers: { 'content-type': cached.mediaType }, body: cached.bytes })
      serve(req, res, ctx, cached, 'HIT', 'REVALIDATED')
      return
    }
    if (req.method === 'HEAD') { sendHead(res, answer, 'MISS'); return }
    const { got, leader } = await fetchShared(req, ctx, digest.value)
    if (got.stored === true) await remember(ref, digest, got)
    if (leader || got.status !== 200 || await allowed(req, res, ctx, digest.value)) sendGot(req, res, ctx, got, leader ? 'MISS' : 'JOINED')
  }

  /** One upstream HEAD per (host, repository, tag, Accept) in flight. */
  async function headTag (req: IncomingMessage, ctx: PullThroughContext, ref: TagRef): Promise<HeadOutcome> {
    const authorization = headerValue(req.headers, 'authorization')
    const run = async (): Promise<HeadOutcome> => {
      try {
        const a = await upstream.request({ host: ctx.host, method: 'HEAD', path: upstreamPath(ctx), headers: upstreamHeaders(req), followRedirects: true })
        discardBody(a.body)
        return { answer: { status: a.status, headers: a.headers, ms: a.ms }, authorization }
      } catch (error) {
        return { error, authorization }
      }
    }
    const shared = await heads.run(tagKey(ref), run)
    const refused = shared.answer?.status === 401 || shared.answer?.status === 403
    return refused && shared.authorization !== authorization ? await run() : shared
  }

  /** GET of a manifest (by digest, or by tag when the HEAD gave no digest), shared while in flight. */
  async function fetchShared (req: IncomingMessage, ctx: PullThroughContext, reference: string): Promise<{ got: Buffered, leader: boolean }> {
    let leader = false
    const key = `${ctx.host}/${ctx.repository}@${reference}#${headerValue(req.headers, 'authorization') === undefined ? 'anon' : 'auth'}`
    const got = await gets.run(key, async () => {
      leader = true
      const a = await upstream.request({ host: ctx.host, method: 'GET', path: upstreamPath(ctx, reference), headers: upstreamHeaders(req), followRedirects: true })
      const got: Buffered = { status: a.status, headers: a.headers, ms: a.ms, body: await readBody(a.body, MAX_MANIFEST_BYTES, manifestTooLarge) }
      access.recordFetch({ ...accessContext(req, ctx, reference), status: a.status })
      if (a.status !== 200) return got
      const asked = tryParseDigest(reference)
      const algorithm = asked?.algorithm ?? 'sha256'
      const hex = createHash(algorithm).update(got.body).digest('hex')
      got.digest = { algorithm, hex, value: `${algorithm}:${hex}` }
      if (asked !== undefined && hex !== asked.hex) {
        throw new ProxyError(502, 'ERR_UPSTREAM_DIGEST', `upstream ${ctx.host}: manifest ${asked.value} has digest ${got.digest.value}`)
      }
      got.stored = await cache.manifests.put(got.digest, got.body, contentTypeOf(got.headers), { host: ctx.host, repository: ctx.repository })
      return got
    })
    return { got, leader }
  }

  /** The cached manifest a tag record points at, if still cached. */
  async function manifestOf (record: TagRecord): Promise<CachedManifest | undefined> {
    const d = tryParseDigest(record.digest)
    return d === undefined ? undefined : await cache.manifests.get(d)
  }

  async function remember (ref: TagRef, digest: Digest, m: { headers: Buffered['headers'], body: Buffer }): Promise<void> {
    await cache.tags.put(ref, { digest: digest.value, mediaType: contentTypeOf(m.headers), size: m.body.length, fetchedAt: Date.now() })
      .catch(err => log.warn({ err: (err as Error).message, tag: ref.tag }, 'tag record not persisted'))
  }

  /** A non-200 HEAD answer: HEAD clients get it as it is; GET clients get the upstream's GET. */
  async function answerUnchanged (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext, head: Omit<Buffered, 'body'>): Promise<void> {
    if (req.method === 'HEAD') { sendHead(res, head, 'MISS'); return }
    await forward(req, res, ctx, 'MISS')
  }

  async function forward (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext, status: CacheStatus): Promise<void> {
    const method = req.method === 'HEAD' ? 'HEAD' : 'GET'
    const a = await upstream.request({ host: ctx.host, method, path: upstreamPath(ctx), headers: upstreamHeaders(req), followRedirects: true })
    await sendAnswer(res, a, method, status)
  }

  return { handle }
}

function serveManifest (req: IncomingMessage, res: ServerResponse, m: CachedManifest, status: CacheStatus, upstreamStatus?: string): void {
  writeHead(res, 200, {
    'content-type': m.mediaType,
    'content-length': m.bytes.length,
    'docker-content-digest': m.digest.value,
    'docker-distribution-api-version': 'registry/2.0',
    etag: `"${m.digest.value}"`,
    ...cacheHeaders(status, upstreamStatus),
  })
  res.end(req.method === 'HEAD' ? undefined : m.bytes)
}

function sendHead (res: ServerResponse, a: Omit<Buffered, 'body'>, status: CacheStatus): void {
  writeHead(res, a.status, { ...stripHopByHop(a.headers), ...cacheHeaders(status), 'x-crossdock-upstream-ms': String(Math.round(a.ms)) })
  res.end()
}

function sendFetched (req: IncomingMessage, res: ServerResponse, got: Buffered, status: CacheStatus): void {
  const headers: Record<string, string | string[]> = { ...stripHopByHop(got.headers), ...cacheHeaders(status), 'x-crossdock-upstream-ms': String(Math.round(got.ms)) }
  if (got.status === 200 && got.digest !== undefined) headers['docker-content-digest'] = got.digest.value
  headers['content-length'] = String(got.body.length)
  writeHead(res, got.status, headers)
  res.end(req.method === 'HEAD' ? undefined : got.body)
}

function contentTypeOf (headers: Buffered['headers']): string {
  return mediaTypeOf(headerValue(headers, 'content-type')) ?? 'application/octet-stream'
}

function manifestTooLarge (): ProxyError {
  return new ProxyError(502, 'ERR_UPSTREAM_TOO_LARGE', `upstream manifest larger than ${MAX_MANIFEST_BYTES} bytes`)
}
