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
 * Refusals are counted by rule, never by repository (bounded labels: the rules are the operator's).
 */
import { canonicalRepository, type PullPattern } from '../config/pull-patterns.js'

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

export class PullPolicy {
  constructor (private readonly opts: PullPolicyOptions) {}

  /** True when neither list is set: every pull is allowed, nothing to check. */
  get open (): boolean {
    return this.opts.allow.length === 0 && this.opts.deny.length === 0
  }

  decide (host: string, repository: string): PullDecision {
    if (this.open) return { allowed: true }
    const name = canonicalRepository(host, repository)
    const denied = this.opts.deny.find(p => p.regex.test(name))
    let decision: PullDecision = { allowed: true }
    if (denied !== undefined) {
      decision = { allowed: false, rule: denied.text, reason: `crossdock: pulling ${name} is refused by the PULL_DENY rule ${denied.text}` }
    } else if (this.opts.allow.length > 0 && !this.opts.allow.some(p => p.regex.test(name))) {
      decision = { allowed: false, rule: NOT_ALLOWED_RULE, reason: `crossdock: pulling ${name} is refused: it matches no PULL_ALLOW rule (${this.opts.allow.map(p => p.text).join(' ').slice(0, 200)})` }
    }
    if (!decision.allowed) this.opts.onDenied?.({ host, rule: decision.rule })
    return decision
  }
}

const READ_PATH = /^\/v2\/(.+?)\/(?:blobs\/(?!uploads(?:\/|$))[^/]+|manifests\/[^/]+|tags\/list|referrers\/[^/]+)$/

/** The repository a read (`blobs`, `manifests`, `tags/list`, `referrers`) names; undefined otherwise. */
export function repositoryOfRead (path: string): string | undefined {
  const q = path.indexOf('?')
  return READ_PATH.exec(q === -1 ? path : path.slice(0, q))?.[1]
}
