/**
 * Client access control for both doors, from one HTPASSWD_FILE (bcrypt, `htpasswd -B`).
 *
 *   registry door  Authorization: Basic …        ─┐
 *   proxy door     CONNECT + Proxy-Authorization ─┼─► checkBasic ─► throttle? ─► cache? ─► bcrypt
 *   (hosted names inside a MITM session use the   │                 (per source  (sha256 of   (once per
 *    registry path with the inner Authorization) ─┘                  address)     header, 60 s) credential)
 *
 * Choices, and why:
 * - `GET /v2/` challenges (401 + `WWW-Authenticate: Basic`) whenever no credentials are sent, even
 *   with AUTH_ANONYMOUS_PULL. dockerd pings /v2/ unauthenticated before login, pull and push, and
 *   builds its challenge list from that one answer: if /v2/ says 200, `docker login` "succeeds"
 *   without sending the password and `docker push` never sends credentials, so every push gets 401
 *   (moby/moby#12972, distribution/distribution#1028). The cost: dockerd's classic image store
 *   (20.10, our e2e version) then refuses to pull anonymously ("no basic auth credentials") because
 *   its Basic handler has nothing to send (getnora-io/nora#780 reports the same trade-off). Clients
 *   that go straight to the manifest (containerd/ctr, buildkit) or that answer a Basic challenge
 *   with empty credentials (skopeo, containers/image) can pull anonymously (from their source, not
 *   yet run end to end here); docker users log in.
 *   Both at once would need Bearer tokens (anonymous tokens, like Docker Hub) — a separate issue.
 * - `Basic Og==` (empty user and password, what containers/image sends when it has no credentials)
 *   counts as anonymous, not as a failed login, so anonymous skopeo pulls are not throttled.
 * - Any valid user may pull and push (no per-user ACLs), as with distribution's htpasswd auth.
 * - CONNECT without Proxy-Authorization is allowed only when AUTH_ANONYMOUS_PULL is on AND the
 *   authority passes `anonymousConnect` (the lead passes "this host is intercepted"). Raw tunnels to
 *   other hosts never go anonymous: that would make the proxy an open relay. An intercepted session
 *   is safe to open anonymously because every request inside it is seen: pushes to hosted names are
 *   checked by `authorizeRegistry` with the inner Authorization, pushes upstream by the push policy.
 *   Credentials that are sent are always checked, even when anonymous access would be allowed:
 *   a typo in dockerd's HTTPS_PROXY should fail loudly, not silently downgrade to anonymous.
 * - Clients are never told whether the user or the password was wrong (the log says which); the
 *   compare for an unknown user still runs bcrypt against a real hash so timing does not tell either.
 * - A blocked address (too many failures) is refused even for credentials that are in the cache:
 *   otherwise a cache hit would be a bcrypt-free guessing oracle during the block. The registry
 *   answers it 429 TOOMANYREQUESTS with Retry-After; CONNECT answers 407 with the reason.
 */
import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import bcrypt from 'bcryptjs'
import { OciError } from '../errors.js'
import type { Logger } from '../log.js'
import { SingleFlight } from '../util/single-flight.js'
import { loadHtpasswdFile, type HtpasswdFile } from './htpasswd-file.js'
import { FailureThrottle, normalizeRemote, type FailureThrottleOptions } from './failure-throttle.js'

export type CheckResult =
  | { ok: true, user: string }
  | { ok: false, reason: string, retryAfterMs?: number }

/**
 * The hosted registry's route actions (structurally the same as `Action` in src/registry/context.ts,
 * not imported so that auth stays a leaf). Only 'pull' may be anonymous; 'ping' (`/v2/`) always
 * challenges anonymous callers; 'catalog' lists every repository, which is more than a pull, so it
 * needs credentials as in nora and Harbor.
 */
import type { Action as RegistryAction, Authorizer } from '../oci/authorizer.js'

export type { RegistryAction }

export interface ClientAuth {
  /**
   * Verifies an `Authorization`/`Proxy-Authorization` header value. `reason` is detailed (it says
   * "unknown user" vs "wrong password"), so it is for logs, not for clients. A missing header answers `{ ok: false, reason: 'no credentials' }` and is
   * not a failed attempt (not logged, not throttled). Every other failure is logged at warn with
   * `{ remote, user, reason }` and counted against `remote`; `retryAfterMs` is set while `remote` is
   * blocked. Never rejects.
   */
  checkBasic: (header: string | undefined, remote: string | undefined) => Promise<CheckResult>
  /**
   * Registry door (and hosted names inside a MITM session). Reads `Authorization`. Anonymous is
   * allowed for 'pull' when AUTH_ANONYMOUS_PULL is on; 'ping' — and, in case a caller labels it
   * 'pull', any request for the path `/v2/` — always challenges anonymous callers (see the header
   * comment). The error carries its status
   * (401, or 429 while blocked) and headers (`WWW-Authenticate: Basic realm="crossdock"` or
   * `Retry-After`); the caller writes it with `writeOciError`.
   */
  authorizeRegistry: (req: IncomingMessage, action: RegistryAction) => Promise<{ ok: true, user?: string } | { ok: false, error: OciError }>
  /**
   * Proxy door, for `createProxyServer({ authorizeConnect })`. Reads `Proxy-Authorization`; returns
   * undefined when the CONNECT may proceed, else a one-line reason for the 407.
   */
  authorizeConnect: (req: IncomingMessage) => Promise<string | undefined>
  /**
   * `authorizeRegistry` as the doors' `Authorizer` hook (oci/authorizer.ts): resolves to allow,
   * throws the OciError to refuse. Both doors take it (hosted registry, upstream namespaces).
   */
  authorizeAccess: Authorizer
}

export interface ClientAuthOptions {
  htpasswdFile?: string
  anonymousPull: boolean
  log: Logger
  /**
   * Which CONNECT authorities (`host:port`, as in the request line) an anonymous client may open
   * when `anonymousPull` is on. Default: none, so without it every CONNECT needs credentials.
   */
  anonymousConnect?: (authority: string) => boolean
  /** How long a verified credential is trusted without bcrypt. Default 60 s. */
  cacheTtlMs?: number
  throttle?: FailureThrottleOptions
  /** Tests inject a counting compare; default bcryptjs's async compare. */
  compare?: (password: string, hash: string) => Promise<boolean>
  /** How often the file's mtime is checked on use. Default 2 s. */
  reloadCheckMs?: number
  now?: () => number
}

export const REALM = 'crossdock'
const CHALLENGE = { 'www-authenticate': `Basic realm="${REALM}"` }
const CACHE_MAX = 1000
const LOGGED_USER_MAX = 100

/** Undefined when no HTPASSWD_FILE is configured; ConfigError when the file is unusable. */
export async function loadClientAuth (opts: ClientAuthOptions): Promise<ClientAuth | undefined> {
  if (opts.htpasswdFile === undefined || opts.htpasswdFile === '') return undefined
  const log = opts.log.child({ module: 'client-auth' })
  const verified = new Map<string, { user: string, expiresAt: number }>()
  const file = await loadHtpasswdFile(opts.htpasswdFile, {
    log,
    checkIntervalMs: opts.reloadCheckMs,
    now: opts.now,
    // A removed user or changed password must not live on in the cache.
    onReload: () => verified.clear(),
  })
  return createClientAuth(file, opts, log, verified)
}

type Parsed = { kind: 'anonymous' } | { kind: 'malformed', reason: string } | { kind: 'basic', user: string, password: string }

/** Parses `Basic base64(user:password)`. The scheme is case-insensitive (RFC 7617 §2). */
function parseBasic (header: string): Parsed {
  const m = /^\s*(\S+)\s+(\S+)\s*$/.exec(header)
  if (m === null) return { kind: 'malformed', reason: 'malformed authorization header' }
  if (m[1].toLowerCase() !== 'basic') return { kind: 'malformed', reason: `unsupported authorization scheme ${m[1].slice(0, 20)}` }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(m[2])) return { kind: 'malformed', reason: 'Basic credentials are not base64' }
  const decoded = Buffer.from(m[2], 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return { kind: 'malformed', reason: 'Basic credentials have no colon' }
  const user = decoded.slice(0, colon)
  const password = decoded.slice(colon + 1)
  if (user === '' && password === '') return { kind: 'anonymous' }
  if (user === '') return { kind: 'malformed', reason: 'Basic credentials have an empty user name' }
  return { kind: 'basic', user, password }
}

function isBaseEndpoint (url: string | undefined): boolean {
  const path = (url ?? '').split('?')[0]
  return path === '/v2/' || path === '/v2'
}

function createClientAuth (
  file: HtpasswdFile,
  opts: ClientAuthOptions,
  log: Logger,
  verified: Map<string, { user: string, expiresAt: number }>,
): ClientAuth {
  const now = opts.now ?? Date.now
  const ttl = opts.cacheTtlMs ?? 60_000
  const compare = opts.compare ?? ((password: string, hash: string) => bcrypt.compare(password, hash))
  const throttle = new FailureThrottle({ now, ...opts.throttle })
  // Parallel requests with a new credential (dockerd pushes layers in parallel) share one bcrypt run.
  const inflight = new SingleFlight<CheckResult>()

  function fail (remote: string, user: string | undefined, reason: string, door: string | undefined): CheckResult {
    if (throttle.recordFailure(remote)) log.warn({ remote, door }, 'too many failed logins; address blocked')
    // The user name is client-controlled: bounded so a log line cannot be made huge. Never the password.
    log.warn({ remote, user: user?.slice(0, LOGGED_USER_MAX), reason, door }, 'client authentication failed')
    return { ok: false, reason }
  }

  async function verify (user: string, password: string): Promise<CheckResult> {
    const users = await file.users()
    const hash = users.get(user)
    if (hash === undefined) {
      // Same bcrypt cost as a real check, result ignored, so response time does not reveal which users exist.
      const some = users.values().next()
      if (some.done !== true) await compare(password, some.value).catch(() => false)
      return { ok: false, reason: 'unknown user' }
    }
    const good = await compare(password, hash).catch(err => {
      log.error({ err: (err as Error).message, user }, 'bcrypt compare failed')
      return false
    })
    return good ? { ok: true, user } : { ok: false, reason: 'wrong password' }
  }

  async function check (header: string | undefined, rawRemote: string | undefined, door?: string): Promise<CheckResult> {
    if (header === undefined || header === '') return { ok: false, reason: 'no credentials' }
    const remote = normalizeRemote(rawRemote)
    const parsed = parseBasic(header)
    if (parsed.kind === 'anonymous') return { ok: false, reason: 'no credentials' }
    const user = parsed.kind === 'basic' ? parsed.user : undefined
    const blocked = throttle.blockedFor(remote)
    if (blocked > 0) {
      const reason = `too many failed logins from ${remote}; retry in ${Math.ceil(blocked / 1000)} s`
      log.warn({ remote, user: user?.slice(0, LOGGED_USER_MAX), reason, door }, 'client authentication failed')
      return { ok: false, reason, retryAfterMs: blocked }
    }
    if (parsed.kind === 'malformed') return fail(remote, undefined, parsed.reason, door)

    // Reload the file (if changed) before trusting the cache, so a removed user stops working within reloadCheckMs.
    await file.users()
    // The key is a digest of the whole header: the password itself is never kept in memory here.
    const key = createHash('sha256').update(header.trim()).digest('hex')
    const hit = verified.get(key)
    if (hit !== undefined && hit.expiresAt > now()) return { ok: true, user: hit.user }
    if (hit !== undefined) verified.delete(key)

    const result = await inflight.run(key, () => verify(parsed.user, parsed.password))
    if (!result.ok) return fail(remote, parsed.user, result.reason, door)
    // Only verified credentials are cached; Map order is insertion order, so drop the oldest when full.
    if (verified.size >= CACHE_MAX) verified.delete(verified.keys().next().value as string)
    verified.set(key, { user: result.user, expiresAt: now() + ttl })
    return result
  }

  const authorizeRegistry: ClientAuth['authorizeRegistry'] = async (req, action) => {
    const result = await check(req.headers.authorization, req.socket?.remoteAddress, 'registry')
    if (result.ok) return { ok: true, user: result.user }
    if (result.reason === 'no credentials') {
      if (action === 'pull' && opts.anonymousPull && !isBaseEndpoint(req.url)) return { ok: true }
      return { ok: false, error: new OciError('UNAUTHORIZED', 'authentication required', { headers: CHALLENGE }) }
    }
    if (result.retryAfterMs !== undefined) {
      return {
        ok: false,
        error: new OciError('TOOMANYREQUESTS', 'too many failed logins from this address', {
          headers: { 'retry-after': String(Math.ceil(result.retryAfterMs / 1000)) },
        }),
      }
    }
    // One message for every failure: the client learns nothing about which users exist.
    return { ok: false, error: new OciError('UNAUTHORIZED', 'invalid user name or password', { headers: CHALLENGE }) }
  }

  // Plain closures, no `this`: the composition root passes these around as bare functions.
  return {
    checkBasic: async (header, remote) => await check(header, remote),
    authorizeRegistry,
    async authorizeAccess (req, access) {
      const r = await authorizeRegistry(req, access.action)
      if (!r.ok) throw r.error
    },
    async authorizeConnect (req) {
      const result = await check(req.headers['proxy-authorization'], req.socket?.remoteAddress, 'proxy')
      if (result.ok) return undefined
      if (result.reason === 'no credentials') {
        if (opts.anonymousPull && opts.anonymousConnect?.(req.url ?? '') === true) return undefined
        return 'proxy authentication required (set user:pass in HTTPS_PROXY)'
      }
      if (result.retryAfterMs !== undefined) return result.reason
      return 'invalid proxy user name or password'
    },
  }
}
