/**
 * Upstream requests crossdock makes on its own behalf (the registry-port door, access checks, stale
 * checks, prefetch) with the registry token dance done here. Same `request()` shape as
 * UpstreamClient, so it drops in wherever an `UpstreamRequester` is expected.
 *
 *   request(host, path, scope = repository:<name>:pull)
 *     ├─ token cached for (host, scope)? send it : (Basic known for host? send it : send nothing)
 *     ├─ not 401 ───────────────────────────────────────────────────────────► answer
 *     └─ 401 ─► WWW-Authenticate
 *          ├─ Bearer realm,service,scope ─► GET realm?service=&scope= (Basic if configured for the
 *          │     registry or the realm, see credentials.ts; one fetch per key in flight) ─► cache
 *          │     until 60 s before expiry ─► retry once ─► answer (a second 401 is returned as is)
 *          └─ Basic ─► configured credentials? retry once with Basic : the 401 as is
 *
 * Contract:
 * - the caller's own `Authorization` header is never forwarded: this wrapper owns upstream auth for
 *   the requests given to it (on the registry door, a client's Authorization is for crossdock);
 * - a request with a body is sent once: a 401 comes back as is (a stream cannot be replayed);
 * - rejects like UpstreamClient, plus a ProxyError `ERR_UPSTREAM_AUTH` (502) when the token realm
 *   fails (unreachable, non-200, no token in its JSON), or a DestinationRefused (403) when the realm
 *   is plain http for an https registry or its address is refused by the destination policy;
 * - neither tokens nor credentials reach a log line.
 */
import type { Logger } from '../log.js'
import { ProxyError } from '../errors.js'
import { DestinationRefused } from './destination-policy.js'
import { SingleFlight } from '../util/single-flight.js'
import { discardBody, readJson } from './body.js'
import { pickChallenge, type AuthChallenge } from './auth-challenge.js'
import { basicAuthorization, type UpstreamCredentials } from './credentials.js'
import type { UpstreamRequester, UpstreamRequest, UpstreamResponse } from './upstream-client.js'

export interface AuthenticatingUpstreamOptions {
  upstream: UpstreamRequester
  credentials: UpstreamCredentials
  log: Logger
  /** Clock in ms (tests pass a fake one). */
  now?: () => number
}

export type AuthenticatedRequest = UpstreamRequest & {
  /** Token scope; defaults to `repository:<name>:pull` derived from a `/v2/<name>/…` path. */
  scope?: string
}

interface CachedToken { token: string, usableUntil: number }

/** Tokens are reused until this long before they expire (a pull that starts must not outlive it). */
export const TOKEN_EXPIRY_MARGIN_MS = 60_000
/** `expires_in` when the realm does not say (distribution's token spec default). */
const DEFAULT_EXPIRES_IN_S = 60
const MAX_TOKENS = 10_000

export class AuthenticatingUpstream implements UpstreamRequester {
  private readonly upstream: UpstreamRequester
  private readonly credentials: UpstreamCredentials
  private readonly log: Logger
  private readonly now: () => number
  private readonly tokens = new Map<string, CachedToken>()
  /** Hosts that answered with a Basic challenge: send Basic up front next time. */
  private readonly basicHosts = new Set<string>()
  private readonly fetches = new SingleFlight<string>()

  constructor (opts: AuthenticatingUpstreamOptions) {
    this.upstream = opts.upstream
    this.credentials = opts.credentials
    this.log = opts.log.child({ module: 'upstream-auth' })
    this.now = opts.now ?? Date.now
  }

  async request (req: AuthenticatedRequest): Promise<UpstreamResponse> {
    const { scope: askedScope, ...plain } = req
    const scope = askedScope ?? scopeFromPath(req.path) ?? ''
    const key = `${req.host.toLowerCase()} ${scope}`
    const { authorization: _callers, ...headers } = lowerCaseKeys(req.headers ?? {})
    const send = async (authorization: string | undefined): Promise<UpstreamResponse> =>
      await this.upstream.request({ ...plain, headers: authorization !== undefined ? { ...headers, authorization } : headers })

    const cached = this.cachedToken(key)
    const basic = this.basicHosts.has(req.host) ? this.credentials.forHost(req.host) : undefined
    const first = await send(cached !== undefined ? `Bearer ${cached}` : basic !== undefined ? basicAuthorization(basic) : undefined)
    if (first.status !== 401 || req.body != null) return first

    const challenge = pickChallenge(first.headers['www-authenticate'])
    if (challenge === undefined) return first
    if (challenge.scheme === 'basic') {
      const c = this.credentials.forHost(req.host)
      if (c === undefined || basic !== undefined) return first
      discardBody(first.body)
      this.basicHosts.add(req.host)
      return await this.retried(send(basicAuthorization(c)), req, scope)
    }
    discardBody(first.body)
    // A cached token that was refused is dropped: the one retry uses a fresh token.
    if (cached !== undefined) this.tokens.delete(key)
    const token = await this.fetches.run(key, async () => await this.fetchToken(req, challenge, scope, key))
    return await this.retried(send(`Bearer ${token}`), req, scope)
  }

  /** Tokens currently cached (for tests and /metrics). */
  get cachedTokens (): number {
    return this.tokens.size
  }

  private async retried (answer: Promise<UpstreamResponse>, req: UpstreamRequest, scope: string): Promise<UpstreamResponse> {
    const a = await answer
    if (a.status === 401) this.log.warn({ host: req.host, scope, method: req.method }, 'upstream refused freshly obtained credentials; not retrying')
    return a
  }

  private cachedToken (key: string): string | undefined {
    const t = this.tokens.get(key)
    if (t === undefined) return undefined
    if (this.now() < t.usableUntil) return t.token
    this.tokens.delete(key)
    return undefined
  }

  /** GET realm?service=&scope= → token; cached for (host, scope) when it lives long enough. */
  private async fetchToken (req: UpstreamRequest, challenge: AuthChallenge, scope: string, key: string): Promise<string> {
    let realm: URL
    try {
      realm = new URL(challenge.params.realm ?? '')
    } catch {
      throw new ProxyError(502, 'ERR_UPSTREAM_AUTH', `upstream ${req.host}: Bearer challenge without a usable realm`)
    }
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') throw new ProxyError(502, 'ERR_UPSTREAM_AUTH', `upstream ${req.host}: token realm is not http(s)`)
    this.credentials.learnRealm(req.host, realm.host)
    const query = new URLSearchParams(realm.search)
    if (challenge.params.service !== undefined) query.set('service', challenge.params.service)
    // The challenge's scope is what the registry wants; ours is the fallback (e.g. /v2/ has none).
    const wanted = challenge.params.scope ?? scope
    if (wanted !== '') query.set('scope', wanted)
    const c = this.credentials.forRealm(realm.host, req.host)
    const started = this.now()
    let answer: UpstreamResponse
    try {
      answer = await this.upstream.request({
        host: realm.host,
        protocol: realm.protocol as 'https:' | 'http:',
        method: 'GET',
        path: `${realm.pathname}?${query.toString()}`,
        headers: { accept: 'application/json', ...(c !== undefined ? { authorization: basicAuthorization(c) } : {}) },
        followRedirects: true,
        // https only, unless the registry itself is plain http; the realm's host is dialled under
        // the destination policy like any other (a challenge naming 127.0.0.1 is refused).
        plainHttp: req.protocol === 'http:',
        signal: req.signal,
      })
    } catch (err) {
      if (err instanceof DestinationRefused) throw err
      throw new ProxyError(502, 'ERR_UPSTREAM_AUTH', `token realm ${realm.host} for ${req.host}: ${(err as Error).message}`, { cause: err })
    }
    if (answer.status !== 200) {
      discardBody(answer.body)
      throw new ProxyError(502, 'ERR_UPSTREAM_AUTH', `token realm ${realm.host} for ${req.host} answered ${answer.status}${c !== undefined ? ' to the configured credentials' : ''}`)
    }
    const json = await readJson(answer.body, 1 << 20).catch(() => undefined) as Record<string, unknown> | undefined
    const token = typeof json?.token === 'string' && json.token !== '' ? json.token : typeof json?.access_token === 'string' ? json.access_token : undefined
    if (token === undefined || token === '') throw new ProxyError(502, 'ERR_UPSTREAM_AUTH', `token realm ${realm.host} for ${req.host}: no token in its answer`)
    const expiresIn = typeof json?.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : DEFAULT_EXPIRES_IN_S
    const issued = typeof json?.issued_at === 'string' ? Date.parse(json.issued_at) : NaN
    // A realm clock ahead of ours must not stretch the lifetime: never count from later than now.
    const from = Number.isFinite(issued) ? Math.min(issued, started) : started
    const usableUntil = from + expiresIn * 1000 - TOKEN_EXPIRY_MARGIN_MS
    if (usableUntil > this.now()) {
      if (this.tokens.size >= MAX_TOKENS) this.tokens.delete(this.tokens.keys().next().value as string)
      this.tokens.set(key, { token, usableUntil })
    }
    this.log.debug({ host: req.host, realm: realm.host, scope: wanted, withCredentials: c !== undefined, expiresIn }, 'upstream token obtained')
    return token
  }
}

const REPOSITORY_PATH = /^\/v2\/(.+?)\/(?:blobs|manifests|tags|referrers)\//

/** `repository:<name>:pull` for `/v2/<name>/{blobs,manifests,tags,referrers}/…`; undefined otherwise. */
export function scopeFromPath (path: string): string | undefined {
  const m = REPOSITORY_PATH.exec(path.split('?')[0])
  return m !== null ? `repository:${m[1]}:pull` : undefined
}

function lowerCaseKeys (headers: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(headers)) out[k.toLowerCase()] = v
  return out
}
