/**
 * The client crossdock uses for every upstream registry request: an undici Agent (keep-alive,
 * pipelining 1) whose connections are opened by the Dialer (UPSTREAM_CONNECT_TO, UPSTREAM_PROXY,
 * DISABLE_IPV6) and then wrapped in TLS with the *real* host name for SNI and certificate checks.
 *
 * Contract of `request`:
 * - resolves with the upstream's status, headers and a body stream as soon as headers arrive;
 *   the caller owns the body and must consume or destroy it;
 * - rejects (a ProxyError via proxyErrorFrom) when no response could be had: connect failure,
 *   TLS failure, timeouts (PROXY_CONNECT_TIMEOUT, PROXY_READ_TIMEOUT);
 * - with `followRedirects`, 3xx answers are followed here (Docker Hub → CDN, S3 presigned URLs,
 *   relative Locations), at most 5 hops, and the caller only ever sees the final response. Each hop
 *   must be https (http only when the request itself was plain http, `plainHttp`) and is dialled
 *   under the destination policy (the Dialer's); Authorization is dropped as soon as a hop changes
 *   scheme, host or port from the original request. A refused hop rejects with DestinationRefused
 *   (403) before anything is sent to it.
 */
import { readFileSync } from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'
import type { Readable } from 'node:stream'
import { Agent, buildConnector, type Dispatcher } from 'undici'
import { ConfigError, ProxyError, proxyErrorFrom } from '../errors.js'
import type { Dialer } from './dialer.js'
import { stripHopByHop, headerValue, type HeaderMap } from './headers.js'
import { discardBody } from './body.js'

export interface UpstreamRequest {
  /** Upstream host, with `:port` when not 443. */
  host: string
  method: string
  /** Path and query, starting with `/`. */
  path: string
  headers?: Record<string, unknown>
  body?: Readable | null
  signal?: AbortSignal
  followRedirects?: boolean
  /** `https:` (default) or `http:` for plain-HTTP upstreams. */
  protocol?: 'https:' | 'http:'
  /**
   * Whether this request and its redirect hops may use plain http. Default: only when `protocol`
   * is `http:` (the upstream itself is configured so). A token realm passes whether its registry is.
   */
  plainHttp?: boolean
}

export interface UpstreamResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Readable
  /** The URL that finally answered (differs from the request after redirects). */
  url: string
  /** Milliseconds until response headers arrived, redirects included. */
  ms: number
}

/**
 * Anything that sends a request upstream and answers it: the client itself, or a wrapper that
 * adds credentials (basic-injection.ts, token-auth.ts). What every caller depends on.
 */
export interface UpstreamRequester {
  request: (req: UpstreamRequest) => Promise<UpstreamResponse>
}

export interface UpstreamClientOptions {
  dialer: Dialer
  verifySsl: boolean
  upstreamCaFile?: string
  connectTimeoutMs: number
  readTimeoutMs: number
  /**
   * Called once per `request` with the final answer's status and headers (after redirects), or
   * status 0 when none came; `host` is the host asked, not a redirect target. For metrics: it must
   * not throw, and must not touch the body.
   */
  onResponse?: (r: { host: string, status: number, ms: number, headers: Record<string, string | string[] | undefined> }) => void
}

const REDIRECTS = new Set([301, 302, 303, 307, 308])
const MAX_REDIRECTS = 5

export class UpstreamClient implements UpstreamRequester {
  private readonly agent: Agent
  private readonly onResponse: UpstreamClientOptions['onResponse']
  private readonly policy: Dialer['policy']

  constructor (opts: UpstreamClientOptions) {
    this.onResponse = opts.onResponse
    this.policy = opts.dialer.policy
    const ca = [...tls.rootCertificates]
    if (opts.upstreamCaFile !== undefined) {
      try {
        ca.push(readFileSync(opts.upstreamCaFile, 'utf8'))
      } catch (err) {
        throw new ConfigError(`UPSTREAM_CA_FILE=${JSON.stringify(opts.upstreamCaFile)}: expected a readable PEM file (${(err as Error).message})`)
      }
    }
    // One context for every upstream connection: passing `ca` instead makes tls.connect parse the
    // ~140 system roots again per connection (measured: 67 ms and a growing heap per tag lookup,
    // 3.7 ms with the shared context).
    const secureContext = tls.createSecureContext({ ca })
    const wrapTls = buildConnector({ secureContext, rejectUnauthorized: opts.verifySsl, timeout: opts.connectTimeoutMs } as buildConnector.BuildOptions)
    const connect: buildConnector.connector = (options, callback) => {
      const port = Number(options.port !== '' && options.port !== undefined ? options.port : (options.protocol === 'https:' ? 443 : 80))
      opts.dialer.dial(options.hostname, port).then(sock => {
        if (options.protocol !== 'https:') { callback(null, sock); return }
        // The TCP socket goes to wherever the Dialer decided; TLS keeps the real name (SNI + identity).
        wrapTls({ ...options, servername: options.servername ?? (net.isIP(options.hostname) === 0 ? options.hostname : undefined), httpSocket: sock }, callback)
      }, err => callback(err as Error, null))
    }
    this.agent = new Agent({
      connect,
      pipelining: 1,
      connectTimeout: opts.connectTimeoutMs,
      headersTimeout: opts.readTimeoutMs,
      bodyTimeout: opts.readTimeoutMs,
      keepAliveTimeout: 30_000,
    })
  }

  async request (req: UpstreamRequest): Promise<UpstreamResponse> {
    const started = performance.now()
    let url = new URL(`${req.protocol ?? 'https:'}//${req.host}${req.path}`)
    const origin = url.origin
    const plainHttp = req.plainHttp ?? url.protocol === 'http:'
    let method = req.method
    let headers: HeaderMap = stripHopByHop(req.headers ?? {}, ['host', 'content-length'].filter(h => req.body == null || h !== 'content-length'))
    let body = req.body ?? null
    const failed = (err: unknown): ProxyError => {
      this.onResponse?.({ host: req.host, status: 0, ms: performance.now() - started, headers: {} })
      return proxyErrorFrom(err, url.host)
    }
    for (let hop = 0; ; hop++) {
      if (url.protocol !== 'https:' && !(url.protocol === 'http:' && plainHttp)) {
        throw failed(this.policy.refuse('insecure-scheme', `${url.protocol}//${url.host}`, undefined, 'upstream', `only https is followed from ${origin}`))
      }
      let res: Dispatcher.ResponseData
      try {
        res = await this.agent.request({
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          method: method as Dispatcher.HttpMethod,
          headers,
          body,
          signal: req.signal,
          // undici closes the connection after every HEAD unless told otherwise (a guard against
          // servers that send a body anyway): each tag check paid a new TCP + TLS handshake.
          // Registries answer HEAD without a body, so the connection is kept (issue 20).
          ...(method === 'HEAD' ? { reset: false } : {}),
        })
      } catch (err) {
        throw failed(err)
      }
      const location = headerValue(res.headers, 'location')
      if (req.followRedirects !== true || !REDIRECTS.has(res.statusCode) || location === undefined) {
        const ms = performance.now() - started
        this.onResponse?.({ host: req.host, status: res.statusCode, ms, headers: res.headers })
        return { status: res.statusCode, headers: res.headers, body: res.body, url: url.href, ms }
      }
      discardBody(res.body)
      if (hop >= MAX_REDIRECTS) throw failed(new ProxyError(502, 'ERR_UPSTREAM_REDIRECTS', `upstream ${req.host}: more than ${MAX_REDIRECTS} redirects`))
      try {
        url = new URL(location, url)
      } catch {
        throw failed(new ProxyError(502, 'ERR_UPSTREAM_REDIRECTS', `upstream ${req.host}: redirect to a malformed Location`))
      }
      if (res.statusCode === 303 && method !== 'HEAD') method = 'GET'
      body = null
      // Credentials belong to the upstream's origin (scheme, host and port); a CDN or S3 URL carries
      // its own signature. Once dropped they stay dropped, even if the chain comes back.
      if (url.origin !== origin) {
        const { authorization: _dropped, ...rest } = headers
        headers = rest
      }
    }
  }

  /** Waits for requests in flight, then closes every connection. */
  async close (): Promise<void> {
    await this.agent.close()
  }

  /** Aborts requests in flight and closes every connection (shutdown past its timeout). */
  async destroy (): Promise<void> {
    await this.agent.destroy()
  }
}
