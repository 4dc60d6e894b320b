/**
 * Forwards one client request to an upstream unchanged and streams the answer back:
 * client body → upstream (pushes with ALLOW_PUSH), upstream body → client, both with backpressure.
 * HEAD stays HEAD; status and end-to-end headers pass as they are; hop-by-hop headers are dropped.
 * A failure before the response starts becomes a 502/504 with a one-line reason; a failure after
 * it started aborts the client's connection (never a clean end of a truncated body).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { pipeline } from 'node:stream/promises'
import { proxyErrorFrom, writeProxyError } from '../errors.js'
import type { UpstreamRequester } from '../upstream/upstream-client.js'
import { stripHopByHop } from '../upstream/headers.js'

const BODYLESS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE'])

export interface PassthroughOptions {
  /**
   * Answers instead of the upstream when it cannot be reached or answers 5xx/429 (for requests
   * that must not depend on upstream health, like the `/v2/` ping). Without it, such answers pass.
   */
  whenUnavailable?: (res: ServerResponse) => void
}

export async function passthrough (upstream: UpstreamRequester, req: IncomingMessage, res: ServerResponse, host: string, opts: PassthroughOptions = {}): Promise<void> {
  const method = req.method ?? 'GET'
  const abort = new AbortController()
  const onClose = (): void => { if (!res.writableFinished) abort.abort() }
  res.once('close', onClose)
  try {
    const hasBody = !BODYLESS.has(method) || req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
    const answer = await upstream.request({
      host,
      method,
      path: req.url ?? '/',
      headers: req.headers,
      body: hasBody ? req : null,
      signal: abort.signal,
    })
    if (opts.whenUnavailable !== undefined && (answer.status >= 500 || answer.status === 429)) {
      answer.body.resume()
      opts.whenUnavailable(res)
      return
    }
    res.writeHead(answer.status, stripHopByHop(answer.headers))
    await pipeline(answer.body, res)
  } catch (err) {
    if (!res.headersSent && opts.whenUnavailable !== undefined) opts.whenUnavailable(res)
    else if (!res.headersSent) writeProxyError(res, proxyErrorFrom(err, host))
    else res.destroy()
  } finally {
    res.removeListener('close', onClose)
  }
}
