/**
 * The caching handlers of the pull-through mirror: GET/HEAD of blobs and manifests for upstream H.
 *
 * Blobs (key: digest), one question to the cache for a GET (it looks again by itself when the item
 * moved on between look-up and read):
 *   cache.openOrFill (one flight per digest for both doors, blob-opener.ts):
 *     cached ─────────────────────────────► disk (Range)                               HIT
 *     in flight ──────────────────────────► TailReader on the fill's descriptor        JOINED
 *     else GET upstream (redirects followed) ─► 200 → BlobFill ─► TailReader           MISS
 *                                           └► too big / no room → streamed through,   BYPASS
 *                                              digest checked on the way
 *                                           └► non-200 → the upstream's answer as is   MISS
 *   HEAD never becomes an upstream GET: cached, in flight, or held by a shared tier (the bucket's
 *   published blob: cache.blobs.head) it is answered here (HIT, JOINED, HIT); else the upstream's
 *   HEAD answers (MISS). The status line leaves with the first body byte: a fill
 *   that fails before it is an error answer (OCI JSON on the registry door), after it an abort.
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
 * Prefetch (prefetch.ts): a manifest answered 200 to a client's GET hands its blobs to the
 * prefetcher, which fetches them through this module's own `fetchBlob` (same single flight, same
 * credentials, same `access.recordFetch`); a client asking meanwhile joins the fill (JOINED).
 *
 * Response headers: X-Cache-Status (HIT, MISS, JOINED, STALE, BYPASS) and rpardini's
 * X-Docker-Registry-Proxy-Cache-Upstream-Status; the request log line (request-log.ts) reads them.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Readable, Writable } from 'node:stream'
import { proxyErrorFrom, writeDoorError } from '../errors.js'
import { markAbandoned } from '../observability/request-log.js'
import type { UpstreamResponse } from '../upstream/upstream-client.js'
import { headerValue } from '../upstream/headers.js'
import { requestBlob } from '../upstream/segmented-body.js'
import type { FetchedBlob } from '../cache/blob-opener.js'
import type { BlobFill, FillHandle } from '../cache/blob-fill.js'
import type { CachedBlob } from '../cache/stores.js'
import type { FileHandle } from 'node:fs/promises'
import { TailReader } from '../cache/tail-reader.js'
import { sendFile } from '../util/file-sender.js'
import { isClientGone, sendStream } from '../util/send-stream.js'
import { contentRange, parseRange, unsatisfiedRange, type ByteRange } from '../oci/range.js'
import { tryParseDigest, type Digest } from '../oci/digest.js'
import { upstreamPath, type PullThroughHandler } from './mirror-router.js'
import { createManifestHandler } from './pull-through-manifests.js'
import { ALLOW_ALL, admit } from './access-policy.js'
import {
  accessContext, cacheHeaders, sendAnswer, upstreamHeaders, writeHead,
  type CacheStatus, type PullThroughContext, type PullThroughOptions,
  pickHeaders, type RequestHeaders,
} from './pull-through-answers.js'

export type { CacheStatus, PullThroughContext, PullThroughOptions } from './pull-through-answers.js'

export function createPullThrough (opts: PullThroughOptions): PullThroughHandler {
  const { cache, upstream } = opts
  const access = opts.access ?? ALLOW_ALL
  const log = opts.log.child({ module: 'pull-through' })
  const prefetch = opts.prefetch
  const manifests = createManifestHandler({
    ...opts,
    log,
    // The blobs are fetched as this client fetched the manifest: its upstream credentials (only
    // those: the snapshot outlives the request) and its access context (see prefetch.ts).
    onPassed: prefetch?.enabled !== true ? undefined : (req, ctx, m) => {
      const as = { headers: pickHeaders(req.headers, ['authorization', 'user-agent']) }
      prefetch.manifestPassed({ host: ctx.host, repository: ctx.repository, ...m, fetch: async digest => await fetchBlob(as, { host: ctx.host, door: ctx.door, kind: 'blob', repository: ctx.repository, reference: digest.value }, digest) })
    },
  })

  const noBody = async (): Promise<undefined> => undefined

  async function handle (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext): Promise<void> {
    try {
      if (ctx.kind === 'blob') await blob(req, res, ctx)
      else await manifests.handle(req, res, ctx)
    } catch (err) {
      if (!res.headersSent) writeDoorError(res, proxyErrorFrom(err, ctx.host), ctx.door, req.method)
      else res.destroy(err as Error)
    }
  }

  async function blob (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext): Promise<void> {
    const method = req.method === 'HEAD' ? 'HEAD' : 'GET'
    const d = tryParseDigest(ctx.reference)
    // A digest we cannot verify (or not a digest at all) is not cached: the upstream answers.
    if (d === undefined) { await forward(req, res, ctx, 'BYPASS'); return }
    if (method === 'HEAD') {
      // HEAD never becomes an upstream GET: a download in flight knows the answer.
      const opened = await cache.blobs.open(d)
      if (opened !== undefined) { await serveCached(req, res, ctx, d, opened); return }
      const inflight = cache.blobs.inflight(d)
      if (inflight !== undefined) {
        if (await admit(access, req, res, accessContext(req, ctx))) await serveBody(req, res, ctx, fillHead(inflight, 'JOINED'), noBody)
        return
      }
      // STORAGE=s3: a blob another replica cached, published in the bucket.
      const held = await cache.blobs.head(d)
      if (held === undefined) { await forward(req, res, ctx, 'MISS'); return }
      if (await admit(access, req, res, accessContext(req, ctx))) await serveBody(req, res, ctx, { status: 'HIT', size: held.size, digest: d.value, mediaType: held.mediaType }, noBody)
      return
    }
    // One question to the cache: it hands back the blob opened, a share of a fill, or the answer.
    const source = await cache.blobs.openOrFill(d, async () => await fetchBlob(req, ctx, d))
    switch (source.kind) {
      case 'cached': await serveCached(req, res, ctx, d, source); return
      case 'fill':
        // A client's download shares the link with the prefetcher's (prefetch.ts counts it).
        if (source.leader) prefetch?.noteFill(ctx.host, source.fill)
        if (!source.leader && !await admit(access, req, res, accessContext(req, ctx))) { source.handle.release(); return }
        await serveFill(req, res, ctx, source.fill, source.handle, source.leader ? 'MISS' : source.hit === true ? 'HIT' : 'JOINED')
        return
      case 'answer': await sendAnswer(res, source.answer, 'GET', 'MISS'); return
      case 'bypass':
        log.warn({ host: ctx.host, repository: ctx.repository, digest: d.value, reason: source.reason }, 'blob streamed through uncached')
        await sendAnswer(res, source.answer, 'GET', 'BYPASS', d)
        return
      case 'unshared': await forward(req, res, ctx, 'MISS', d); return
      case 'moving': await forward(req, res, ctx, 'BYPASS', d)
    }
  }

  /** Serves a cached blob from its open handle (closed once served or refused). */
  async function serveCached (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext, d: Digest, { blob, fh }: { blob: CachedBlob, fh: FileHandle }): Promise<void> {
    if (!await admit(access, req, res, accessContext(req, ctx))) { void fh.close(); return }
    await serveBody(req, res, ctx, { status: 'HIT', size: blob.size, digest: d.value, mediaType: blob.mediaType },
      async () => ({ send: async (out, range) => { await sendFile(fh, out, range) } }), () => { void fh.close() })
  }

  /**
   * The one upstream GET of a blob miss (run by the cache's single-flight); a 200 is cacheable. With
   * UPSTREAM_SEGMENTS a large blob comes over several range requests, still answered as one 200.
   */
  async function fetchBlob (req: RequestHeaders, ctx: PullThroughContext, digest: Digest): Promise<FetchedBlob<UpstreamResponse>> {
    const ask = { host: ctx.host, method: 'GET', path: upstreamPath(ctx), headers: upstreamHeaders(req), followRedirects: true }
    const answer = opts.segments !== undefined ? await requestBlob(upstream, ask, opts.segments) : await upstream.request(ask)
    access.recordFetch({ ...accessContext(req, ctx), status: answer.status })
    if (answer.status !== 200) return { answer }
    const length = headerValue(answer.headers, 'content-length')
    const expectedSize = length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined
    log.debug({ host: ctx.host, repository: ctx.repository, digest: digest.value, size: expectedSize }, 'blob miss: filling')
    return { answer, fill: { body: answer.body, expectedSize, mediaType: headerValue(answer.headers, 'content-type'), origin: { host: ctx.host, repository: ctx.repository } } }
  }

  /** Serves a fill through a TailReader that reads through `handle` (released once served or refused). */
  async function serveFill (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext, fill: BlobFill, handle: FillHandle, status: CacheStatus): Promise<void> {
    await serveBody(req, res, ctx, fillHead(fill, status), async range => {
      const reader = new TailReader(fill, range?.start ?? 0, range?.end, handle)
      // Its errors are read where they matter (firstChunk, sendStream); between the two, a failing
      // fill must not make them an uncaught 'error' event.
      reader.on('error', () => {})
      let first: Buffer | null
      try {
        first = await firstChunk(reader)
      } catch (err) {
        reader.destroy()
        throw err
      }
      return {
        send: async out => {
          // Written here, not left to the pipe: once a byte is out, a failure is an abort, and a
          // failure before it (no byte written) is still an error answer.
          // Each chunk's memory goes back to the reader once written (tail-reader.ts: no garbage per read).
          const written = (chunk: Buffer): void => { reader.recycle(chunk) }
          if (first !== null) out.write(first, (err?: Error | null) => { if (err == null) written(first) })
          await sendStream(reader, out, written)
        },
      }
    }, () => { handle.release() })
  }

  /**
   * Answers a blob request from the cache (or a fill): HEAD, 200, 206 for one satisfiable range, 416
   * for an unsatisfiable one. `open` prepares the body (undefined: nothing to serve after all, the
   * response stays unwritten); its `send` writes the bytes (or the range) without ending the
   * response and rejects when they cannot all be sent.
   *
   * The status line goes out with the first body byte, not before: a failure before that (a fill
   * that failed, a read error) is still an HTTP error with a one-line reason. After it, the only
   * honest answer is an aborted connection, logged at warn as abandoned unless the client left.
   */
  async function serveBody (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext, what: BodyHead, open: (range?: ByteRange) => Promise<BodySender | undefined>, release?: () => void): Promise<void> {
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
      // The hosted registry answers the same Range the same way (oci/range.ts).
      const asked = parseRange(req.headers.range, size)
      if (asked === 'unsatisfiable') {
        release?.()
        writeHead(res, 416, { ...headers, 'content-range': unsatisfiedRange(size), 'content-length': 0 })
        res.end()
        return
      }
      if (asked !== undefined) { range = asked; code = 206; headers['content-range'] = contentRange(asked, size) }
      headers['content-length'] = range !== undefined ? range.end - range.start + 1 : size
    }
    if (req.method === 'HEAD') {
      release?.()
      writeHead(res, code, headers)
      res.end()
      return
    }
    try {
      const body = await open(range)
      if (body === undefined) return
      // Implicit headers: Node sends them with the first byte written (see the comment above).
      res.statusCode = code
      for (const [k, v] of Object.entries(headers)) res.setHeader(k, v)
      await body.send(res, range)
      res.end()
    } catch (err) {
      abandon(req, res, ctx, what, err)
    } finally {
      release?.()
    }
  }

  /** A body that could not be sent whole: an error answer if nothing went out yet, else an abort. */
  function abandon (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext, what: BodyHead, err: unknown): void {
    // Nothing of ours destroys the response before this point: destroyed means the client left.
    const clientGone = isClientGone(err) || res.destroyed
    if (!res.headersSent && !clientGone) {
      for (const name of res.getHeaderNames()) res.removeHeader(name)
      writeDoorError(res, proxyErrorFrom(err, ctx.host), ctx.door, req.method)
      return
    }
    if (!clientGone) markAbandoned(res, err, { digest: what.digest })
    res.destroy()
  }

  /** Sends the request upstream unchanged (redirects followed) and streams the answer back. */
  async function forward (req: IncomingMessage, res: ServerResponse, ctx: PullThroughContext, status: CacheStatus, check?: Digest): Promise<void> {
    const method = req.method === 'HEAD' ? 'HEAD' : 'GET'
    const answer = await upstream.request({ host: ctx.host, method, path: upstreamPath(ctx), headers: upstreamHeaders(req, true), followRedirects: true })
    await sendAnswer(res, answer, method, status, check)
  }

  return { handle }
}

/** The head of a blob answer. */
interface BodyHead {
  status: CacheStatus
  size: number | undefined
  digest: string
  mediaType?: string
}

/** Writes a blob's bytes (or a range of them) into the response, without ending it. */
interface BodySender {
  send: (out: Writable, range?: ByteRange) => Promise<void>
}

function fillHead (fill: BlobFill, status: CacheStatus): BodyHead {
  return { status, size: fill.size, digest: fill.digest.value, mediaType: fill.mediaType }
}

/**
 * Waits until `reader` has bytes (or ended) and takes what it has: null at a clean end. Rejects
 * with its error, or when it closes first.
 */
async function firstChunk (reader: Readable): Promise<Buffer | null> {
  await new Promise<void>((resolve, reject) => {
    const settle = (err?: Error): void => {
      reader.off('readable', onReadable)
      reader.off('error', settle)
      reader.off('close', onClose)
      if (err === undefined) resolve()
      else reject(err)
    }
    const onReadable = (): void => { settle() }
    const onClose = (): void => { settle(new Error('reader closed before its first byte')) }
    reader.on('readable', onReadable)
    reader.on('error', settle)
    reader.on('close', onClose)
  })
  return reader.read() as Buffer | null
}
