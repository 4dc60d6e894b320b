/**
 * Private images stay private: may this client be served this cached blob, manifest or tag?
 * (rpardini's README warns its cache "will make your private images very public"; ours does not.)
 *
 *   canServe(host, repository, item, client's upstream Authorization)
 *     operator configured credentials for host ──────────────────────────────► yes (see below)
 *     repository known anonymous-readable (and the item is known there) ─────► yes
 *     verdict cached for (credential, host, repository[, digest]) ────────────► that verdict
 *     else one upstream HEAD of the item: with the client's Authorization, or anonymously (token
 *       dance without credentials) for a client that has none
 *       200 ─► yes (anonymous: the repository is public)    401/403/404 ─► no, as the upstream said
 *       anything else (5xx, 429, unreachable) ─► yes if the repository was ever seen public (and the
 *         item is not known restricted elsewhere): an outage must not take cached public images
 *         away; otherwise no, 503: a private item is not served unverified
 *
 * Knowledge comes from what the pull-through sees (`recordFetch`): a fill that went upstream with no
 * Authorization proves the repository public; one with the client's Authorization proves that
 * credential for the repository (no HEAD needed for the same token's next hit). A digest filled with
 * credentials from a repository not known public is *restricted*: served through another repository
 * only after that repository is shown to hold it (the HEAD above), since a public repository must not
 * become a side door to a private layer whose digest someone knows.
 *
 * Knowledge lives in memory, but for three lists kept beside the cache (persistent-set.ts): the
 * repositories ever seen public and the digests ever seen restricted (for the outage fallback above),
 * and the repositories the operator imported (always served). After a restart the first hit per repository is checked again (one HEAD; Docker
 * Hub does not count HEADs), and the lists decide only when that check cannot be made.
 */
import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { LRUCache } from 'lru-cache'
import { OciError, writeOciError } from '../errors.js'
import type { Logger } from '../log.js'
import { SingleFlight } from '../util/single-flight.js'
import type { UpstreamRequester, UpstreamResponse } from '../upstream/upstream-client.js'
import type { UpstreamCredentials } from '../upstream/credentials.js'
import { headerValue } from '../upstream/headers.js'
import { discardBody } from '../upstream/body.js'
import { MANIFEST_ACCEPT } from '../oci/media-types.js'
import { upstreamPath, type MirrorContext } from './mirror-router.js'
import { PersistentSet } from './persistent-set.js'

export interface AccessContext {
  host: string
  repository: string
  kind: 'blob' | 'manifest'
  /** Tag or digest, as asked. */
  reference: string
  /** The Authorization the client meant for the upstream (proxy door only; see `upstreamAuthorizationOf`). */
  authorization?: string
  /** The client's Accept, for a manifest HEAD. */
  accept?: string
}

export type AccessDecision =
  | { allowed: true }
  | { allowed: false, status: number, headers: Record<string, string>, reason: string }

/** Consulted by the pull-through handlers before anything cached (or being filled) is served. */
export interface AccessPolicy {
  /** Resolves (never rejects) with whether `ctx`'s client may be served the cached item. */
  canServe: (ctx: AccessContext) => Promise<AccessDecision>
  /** Called with every upstream answer to a fetch the pull-through made with `ctx`'s Authorization. */
  recordFetch: (ctx: AccessContext & { status: number }) => void
}

/** Serves everything: the cache as it was before access checks (tests of the cache alone). */
export const ALLOW_ALL: AccessPolicy = { canServe: async () => ({ allowed: true }), recordFetch: () => {} }

export interface UpstreamAccessPolicyOptions {
  /** Operator credentials: hosts with an entry share their cached content with every client. */
  credentials: UpstreamCredentials
  /** Sends the client's own Authorization as is (the raw UpstreamClient). */
  upstream: UpstreamRequester
  /** Anonymous token dance (an AuthenticatingUpstream with no credentials). */
  anonymous: UpstreamRequester
  log: Logger
  now?: () => number
  /** How long an accepted credential stays accepted without asking again (default 5 min). */
  allowTtlMs?: number
  /** How long a refusal is remembered (default 1 min: a `docker login` must not wait long). */
  denyTtlMs?: number
  /** How long a repository stays known anonymous-readable (default 1 h: repositories may go private). */
  publicTtlMs?: number
  /** `host/repository`s imported into the cache by the operator (default: an empty set in memory). */
  trusted?: PersistentSet
  /** `host/repository`s ever served anonymously, for when the upstream cannot be asked. */
  everPublic?: PersistentSet
  /** Digests ever seen restricted: never served by that fallback. */
  everRestricted?: PersistentSet
}

interface Verdict { decision: AccessDecision, until: number }

export class UpstreamAccessPolicy implements AccessPolicy {
  private readonly now: () => number
  private readonly log: Logger
  private readonly publicUntil = new LRUCache<string, number>({ max: 50_000 })
  private trusted: PersistentSet | undefined
  private readonly everPublic: PersistentSet | undefined
  private readonly everRestricted: PersistentSet | undefined
  private readonly verdicts = new LRUCache<string, Verdict>({ max: 50_000 })
  /** Restricted digest → the `host/repository`s it is known to be in. */
  private readonly members = new LRUCache<string, Set<string>>({ max: 100_000 })
  private readonly checks = new SingleFlight<AccessDecision>()

  constructor (private readonly opts: UpstreamAccessPolicyOptions) {
    this.now = opts.now ?? Date.now
    this.trusted = opts.trusted
    this.everPublic = opts.everPublic
    this.everRestricted = opts.everRestricted
    this.log = opts.log.child({ module: 'access-policy' })
  }

  /**
   * The operator put this repository's content into the cache (`crossdock import --into cache`,
   * authorised like a push): serve it to every client without asking the upstream, which an
   * air-gapped crossdock does not have. Persisted with `opts.trusted` (survives a restart).
   */
  async trust (host: string, repository: string): Promise<void> {
    this.trusted ??= await PersistentSet.open()
    await this.trusted.add(repoKey({ host, repository }))
  }

  async canServe (ctx: AccessContext): Promise<AccessDecision> {
    if (this.trusted?.has(repoKey(ctx)) === true) return { allowed: true }
    // The operator configured credentials for this upstream, so every client of crossdock pulls with
    // them anyway (the proxy door injects them, the registry door uses them): they chose to share
    // what those credentials can read. Refusing cached copies would only cost upstream requests.
    if (this.opts.credentials.configured(ctx.host, ctx.repository)) return { allowed: true }
    const repo = repoKey(ctx)
    const digest = digestOf(ctx)
    const elsewhere = this.knownElsewhere(ctx)
    if (!elsewhere && (this.publicUntil.get(repo) ?? 0) > this.now()) return { allowed: true }
    const key = `${credentialKey(ctx.authorization)}|${repo}${elsewhere ? `|${digest ?? ''}` : ''}`
    const cached = this.verdicts.get(key)
    if (cached !== undefined && cached.until > this.now()) return cached.decision
    return await this.checks.run(key, async () => await this.check(ctx, key))
  }

  recordFetch (ctx: AccessContext & { status: number }): void {
    if (ctx.status !== 200 || this.opts.credentials.configured(ctx.host, ctx.repository)) return
    const repo = repoKey(ctx)
    const digest = digestOf(ctx)
    if (ctx.authorization === undefined) {
      this.publicUntil.set(repo, this.now() + (this.opts.publicTtlMs ?? 3_600_000))
      this.notePublic(ctx)
      if (digest !== undefined) this.members.get(digest)?.add(repo)
      return
    }
    this.verdicts.set(`${credentialKey(ctx.authorization)}|${repo}`, { decision: { allowed: true }, until: this.now() + (this.opts.allowTtlMs ?? 300_000) })
    if (digest === undefined) return
    const members = this.members.get(digest)
    if (members !== undefined) members.add(repo)
    else if ((this.publicUntil.get(repo) ?? 0) <= this.now()) {
      this.members.set(digest, new Set([repo]))
      this.remember(this.everRestricted, digest)
    }
  }

  private notePublic (ctx: AccessContext): void {
    this.remember(this.everPublic, repoKey(ctx))
  }

  private remember (set: PersistentSet | undefined, key: string): void {
    set?.add(key).catch((err: Error) => {
      this.log.warn({ err: err.message }, 'could not note what the outage fallback needs; it stays in memory')
    })
  }

  /**
   * The upstream cannot answer: a repository once served anonymously is served from the cache,
   * unless the item is a digest ever seen restricted (filled with a client's credentials from a
   * repository not known public) — whatever repository names it, fail closed.
   */
  private servedWhenUnverifiable (ctx: AccessContext): boolean {
    const digest = digestOf(ctx)
    if (digest !== undefined && this.everRestricted?.has(digest) === true) return false
    if (this.knownElsewhere(ctx)) return false
    return this.everPublic?.has(repoKey(ctx)) === true
  }

  /** The item is a digest known to be held by other repositories only (restricted to them so far). */
  private knownElsewhere (ctx: AccessContext): boolean {
    const digest = digestOf(ctx)
    const known = digest !== undefined ? this.members.get(digest) : undefined
    return known !== undefined && !known.has(repoKey(ctx))
  }

  /** One upstream HEAD of the item, as the client (or anonymously); the verdict is cached. */
  private async check (ctx: AccessContext, key: string): Promise<AccessDecision> {
    const repo = repoKey(ctx)
    const path = upstreamPath(ctx)
    const headers: Record<string, string> = ctx.kind === 'manifest' ? { accept: ctx.accept ?? MANIFEST_ACCEPT } : {}
    let answer: UpstreamResponse
    try {
      answer = ctx.authorization !== undefined
        ? await this.opts.upstream.request({ host: ctx.host, method: 'HEAD', path, headers: { ...headers, authorization: ctx.authorization }, followRedirects: true })
        : await this.opts.anonymous.request({ host: ctx.host, method: 'HEAD', path, headers, followRedirects: true })
    } catch (err) {
      if (this.servedWhenUnverifiable(ctx)) {
        this.log.warn({ host: ctx.host, repository: ctx.repository, err: (err as Error).message }, 'access check failed; served as a repository seen public before')
        return { allowed: true }
      }
      this.log.warn({ host: ctx.host, repository: ctx.repository, err: (err as Error).message }, 'access check failed; cached item not served')
      return refusal(503, {}, `crossdock cannot verify access to ${ctx.host}/${ctx.repository}: ${(err as Error).message}`)
    }
    discardBody(answer.body)
    let decision: AccessDecision
    if (answer.status === 200) {
      decision = { allowed: true }
      if (ctx.authorization === undefined) {
        this.publicUntil.set(repo, this.now() + (this.opts.publicTtlMs ?? 3_600_000))
        this.notePublic(ctx)
      }
      const digest = digestOf(ctx)
      if (digest !== undefined) this.members.get(digest)?.add(repo)
    } else if (answer.status === 401 || answer.status === 403 || answer.status === 404) {
      const challenge = headerValue(answer.headers, 'www-authenticate')
      decision = refusal(answer.status, challenge !== undefined ? { 'www-authenticate': challenge } : {}, `upstream ${ctx.host} refuses ${ctx.authorization === undefined ? 'anonymous' : 'these'} credentials for ${ctx.repository}`)
    } else if (this.servedWhenUnverifiable(ctx)) {
      this.log.warn({ host: ctx.host, repository: ctx.repository, upstreamStatus: answer.status }, 'access check inconclusive; served as a repository seen public before')
      return { allowed: true }
    } else {
      this.log.warn({ host: ctx.host, repository: ctx.repository, upstreamStatus: answer.status }, 'access check inconclusive; cached item not served')
      return refusal(503, {}, `crossdock cannot verify access to ${ctx.host}/${ctx.repository}: upstream answered ${answer.status}`)
    }
    const ttl = decision.allowed ? (this.opts.allowTtlMs ?? 300_000) : (this.opts.denyTtlMs ?? 60_000)
    this.verdicts.set(key, { decision, until: this.now() + ttl })
    this.log.debug({ host: ctx.host, repository: ctx.repository, anonymous: ctx.authorization === undefined, status: answer.status }, 'access checked upstream')
    return decision
  }
}

/**
 * The Authorization a request carries *for the upstream*: on the proxy door the client talks to the
 * upstream through us; on the registry door a client's Authorization is for crossdock (htpasswd) and
 * never an upstream credential.
 */
export function upstreamAuthorizationOf (req: Pick<IncomingMessage, 'headers'>, door: MirrorContext['door']): string | undefined {
  return door === 'proxy' ? headerValue(req.headers, 'authorization') : undefined
}

/** Asks `policy`; on a refusal writes the upstream-like OCI error and returns false. */
export async function admit (policy: AccessPolicy, req: IncomingMessage, res: ServerResponse, ctx: AccessContext): Promise<boolean> {
  const d = await policy.canServe(ctx)
  if (d.allowed) return true
  const code = d.status === 401 ? 'UNAUTHORIZED' : d.status === 403 ? 'DENIED' : d.status === 404 ? (ctx.kind === 'blob' ? 'BLOB_UNKNOWN' : 'MANIFEST_UNKNOWN') : 'UNAVAILABLE'
  writeOciError(res, new OciError(code, d.reason, { status: d.status, headers: d.headers }), req.method)
  return false
}

function refusal (status: number, headers: Record<string, string>, reason: string): AccessDecision {
  return { allowed: false, status, headers, reason }
}

/** The reference when it is a digest (a tag is not one). */
function digestOf (ctx: { reference: string }): string | undefined {
  return ctx.reference.includes(':') ? ctx.reference : undefined
}

function repoKey (ctx: { host: string, repository: string }): string {
  return `${ctx.host.toLowerCase()}/${ctx.repository}`
}

/** Credentials are keyed by a hash: the maps never hold a token or password. */
function credentialKey (authorization: string | undefined): string {
  return authorization === undefined ? 'anonymous' : createHash('sha256').update(authorization).digest('base64url')
}
