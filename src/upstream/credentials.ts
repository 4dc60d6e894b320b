/**
 * The operator's upstream credentials (AUTH_REGISTRIES) and the one rule for where they may go.
 *
 * An entry names a registry host *or* its token realm host, as with rpardini's image: both
 * `auth.docker.io:u:p` and `registry-1.docker.io:u:p` configure Docker Hub, and `gitlab.com:u:p`
 * configures registry.gitlab.com. A host therefore belongs to a *family*: Docker Hub's names, a
 * registry and the realm its challenge named (learned at run time), fixed aliases below.
 *
 * Where credentials may be sent (design.md §3, "only to the registry they belong to and its realm"):
 * - to a host of the entry's family (the registry itself, its known realm);
 * - to a token realm named by that registry's challenge when the realm is on the same registrable
 *   domain (auth.docker.io for registry-1.docker.io), or when the operator configured the realm host
 *   itself (its own credentials, to the host they were given for);
 * - never anywhere else: not to a redirect target (UpstreamClient drops Authorization off-host), not
 *   to a realm on a foreign domain (the token is then fetched anonymously).
 * Nothing here logs a credential; `describe()` is the only printable form.
 */
import net from 'node:net'
import type { RegistryCredential } from '../config/index.js'

/** Registries whose token realm or alternate names are on a different host, known in advance. */
const FAMILIES: readonly string[][] = [
  ['registry-1.docker.io', 'auth.docker.io', 'docker.io', 'index.docker.io'],
  ['registry.gitlab.com', 'gitlab.com'],
]

// Public suffixes of two labels that registries are commonly served under; good enough to stop a
// challenge from sending credentials to `evil.co.uk` because the registry is `reg.co.uk`.
const TWO_LABEL_SUFFIXES = new Set(['co.uk', 'com.au', 'co.jp', 'com.br', 'co.nz', 'co.in', 'com.cn', 'github.io', 'amazonaws.com', 'azurecr.io', 'cloudfront.net'])

export class UpstreamCredentials {
  private readonly byHost = new Map<string, RegistryCredential>()
  /** realm host → registry host whose challenge named it (same registrable domain only). */
  private readonly learnedRealms = new Map<string, string>()

  constructor (entries: readonly RegistryCredential[]) {
    for (const e of entries) this.byHost.set(hostKey(e.host), e)
  }

  static none (): UpstreamCredentials {
    return new UpstreamCredentials([])
  }

  get size (): number {
    return this.byHost.size
  }

  /**
   * The credential for requests to `host`: configured for it, for another name of its family, or
   * for the registry whose challenge named `host` as its realm. Undefined when none applies.
   */
  forHost (host: string): RegistryCredential | undefined {
    const h = hostKey(host)
    const registry = this.learnedRealms.get(h)
    return this.configuredFor(h) ?? (registry !== undefined ? this.configuredFor(registry) : undefined)
  }

  /**
   * The credential to send to token realm `realmHost` when `registryHost` challenged: the realm's
   * own entry, or the registry's when the realm is trusted for it. Undefined means "ask anonymously".
   */
  forRealm (realmHost: string, registryHost: string): RegistryCredential | undefined {
    const realm = hostKey(realmHost)
    const own = this.byHost.get(realm)
    if (own !== undefined) return own
    return realmTrusted(realm, hostKey(registryHost)) ? this.forHost(registryHost) : undefined
  }

  /** Remembers that `registryHost`'s challenge named `realmHost` (only a trusted realm is kept). */
  learnRealm (registryHost: string, realmHost: string): void {
    const realm = hostKey(realmHost)
    const registry = hostKey(registryHost)
    if (realm !== registry && realmTrusted(realm, registry) && this.configuredFor(registry) !== undefined) this.learnedRealms.set(realm, registry)
  }

  /** Hosts and user names, never passwords: for start-up logs. */
  describe (): Array<{ host: string, username: string }> {
    return [...this.byHost.values()].map(c => ({ host: c.host, username: c.username }))
  }

  /** An entry for `host` itself or for another name of its family. */
  private configuredFor (host: string): RegistryCredential | undefined {
    const direct = this.byHost.get(host)
    if (direct !== undefined) return direct
    const family = FAMILIES.find(f => f.includes(host)) ?? []
    for (const member of family) {
      const c = this.byHost.get(member)
      if (c !== undefined) return c
    }
    return undefined
  }
}

/** `Basic base64(user:password)`. */
export function basicAuthorization (c: RegistryCredential): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`, 'utf8').toString('base64')}`
}

/** Same family, or same registrable domain (last two labels, three under a known two-label suffix). */
export function realmTrusted (realmHost: string, registryHost: string): boolean {
  const a = hostKey(realmHost)
  const b = hostKey(registryHost)
  if (a === b) return true
  if (FAMILIES.some(f => f.includes(a) && f.includes(b))) return true
  const da = registrableDomain(a)
  return da !== undefined && da === registrableDomain(b)
}

function registrableDomain (host: string): string | undefined {
  const name = host.replace(/:\d+$/, '')
  if (net.isIP(name.replace(/^\[|\]$/g, '')) !== 0 || !name.includes('.')) return undefined
  const labels = name.split('.')
  const n = TWO_LABEL_SUFFIXES.has(labels.slice(-2).join('.')) ? 3 : 2
  return labels.length >= n ? labels.slice(-n).join('.') : undefined
}

/** Host names compare case-insensitively; `:443` is the default port and dropped. */
function hostKey (host: string): string {
  return host.toLowerCase().replace(/:443$/, '')
}
