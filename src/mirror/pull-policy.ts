/**
 * Which upstream repositories may be pulled through (PULL_ALLOW / PULL_DENY), checked by the
 * MirrorRouter for both doors before anything is read from the cache or the upstream:
 *
 *   <canonical host>/<repository> matches a PULL_DENY pattern ──► refused, the rule named
 *   PULL_ALLOW set and no pattern of it matches ───────────────► refused, "PULL_ALLOW" named
 *   otherwise ──────────────────────────────────────────────────► allowed (the default: no lists)
 *
 * Deny wins over allow, so an operator can open `ghcr.io/my-org/**` and still close one of its
 * repositories. Hosted repositories never reach this check (they are not upstream pulls).
 *
 * Patterns and requests are compared in one spelling: lower case, no `:443`, Docker Hub's registry
 * names (docker.io, index.docker.io, registry-1.docker.io) all `docker.io`, and its one-segment
 * names under `library/` (a pattern `docker.io/nginx` and a request for `nginx` both mean
 * `docker.io/library/nginx`; `docker.io/*` means the official images, as `docker pull` reads it).
 * Refusals are counted by rule, never by repository (bounded labels: the rules are the operator's).
 */
import type { PullPattern } from '../config/index.js'
import { DOCKER_HUB_ALIASES, hubName } from '../oci/docker-hub.js'

export type PullDecision =
  | { allowed: true }
  | { allowed: false, rule: string, reason: string }

/** The metrics label for a repository that no PULL_ALLOW pattern matched. */
export const NOT_ALLOWED_RULE = 'PULL_ALLOW'

export interface PullPolicyOptions {
  allow: readonly PullPattern[]
  deny: readonly PullPattern[]
  /** Called for every refusal (metrics). `host` is the upstream host as requested. */
  onDenied?: (r: { host: string, rule: string }) => void
}

interface CompiledPattern { text: string, regex: RegExp }

export class PullPolicy {
  private readonly allow: CompiledPattern[]
  private readonly deny: CompiledPattern[]

  constructor (private readonly opts: PullPolicyOptions) {
    this.allow = opts.allow.map(compile)
    this.deny = opts.deny.map(compile)
  }

  /** True when neither list is set: every pull is allowed, nothing to check. */
  get open (): boolean {
    return this.allow.length === 0 && this.deny.length === 0
  }

  decide (host: string, repository: string): PullDecision {
    if (this.open) return { allowed: true }
    const name = canonicalRepository(host, repository)
    const denied = this.deny.find(p => p.regex.test(name))
    let decision: PullDecision = { allowed: true }
    if (denied !== undefined) {
      decision = { allowed: false, rule: denied.text, reason: `crossdock: pulling ${name} is refused by the PULL_DENY rule ${denied.text}` }
    } else if (this.allow.length > 0 && !this.allow.some(p => p.regex.test(name))) {
      decision = { allowed: false, rule: NOT_ALLOWED_RULE, reason: `crossdock: pulling ${name} is refused: it matches no PULL_ALLOW rule (${this.allow.map(p => p.text).join(' ').slice(0, 200)})` }
    }
    if (!decision.allowed) this.opts.onDenied?.({ host, rule: decision.rule })
    return decision
  }
}

/** The one spelling of an upstream host that patterns and requests are compared in. */
export function canonicalRegistry (host: string): string {
  const h = host.toLowerCase().replace(/:443$/, '')
  return DOCKER_HUB_ALIASES.has(h) ? 'docker.io' : h
}

/** `<canonical host>/<repository>`, with Docker Hub's `library/` for one-segment names. */
export function canonicalRepository (host: string, repository: string): string {
  return `${canonicalRegistry(host)}/${hubName(host, repository.toLowerCase())}`
}

function compile (p: PullPattern): CompiledPattern {
  const host = canonicalRegistry(p.host)
  const segments = p.segments.length === 1 && p.segments[0] !== '**' ? hubName(host, p.segments[0]).split('/') : p.segments
  let source = glob(host)
  for (const s of segments) source += s === '**' ? '(?:/[^/]+)*' : `/${glob(s)}`
  return { text: p.text, regex: new RegExp(`^${source}$`) }
}

/** `*` matches within one host or one segment; everything else is literal. */
function glob (part: string): string {
  return part.split('*').map(p => p.replace(/[.+?^${}()|[\]\\-]/g, '\\$&')).join('[^/]*')
}
