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
 *
 * Several credentials per registry (issue 19): an entry may name a repository prefix
 * (`auth.docker.io/myorg:user:token`). For a request about repository R the entry of R's family
 * whose prefix is the longest whole-segment prefix of R wins (`myorg` covers `myorg/app` and
 * `myorg/team/app`, never `myorg-two/app`); the host-only entry is the fallback. A request that
 * names no repository (`/v2/`) or several that disagree gets the host-only entry.
 *
 * Credential helpers (CREDENTIAL_HELPERS, credential-helper.ts) come after AUTH_REGISTRIES: an
 * entry that applies wins; otherwise the helper of the registry's family is asked (`resolve…`).
 */
import net from 'node:net'
import type { RegistryCredential } from '../config/index.js'
import { repositoryOfPath } from '../oci/api-path.js'
import type { CredentialHelpers, HelperCredential } from './credential-helper.js'
import type { CredentialHelperEntry } from '../config/credential-helper-entries.js'

/** A credential to send: from AUTH_REGISTRIES, or a helper's answer (`helper` says which entry). */
export type ResolvedCredential = RegistryCredential & { identityToken?: boolean, helper?: CredentialHelperEntry }

/** Registries whose token realm or alternate names are on a different host, known in advance. */
const FAMILIES: readonly string[][] = [
  ['registry-1.docker.io', 'auth.docker.io', 'docker.io', 'index.docker.io'],
  ['registry.gitlab.com', 'gitlab.com'],
]

// Public suffixes of two labels that registries are commonly served under; good enough to stop a
// challenge from sending credentials to `evil.co.uk` because the registry is `reg.co.uk`.
const TWO_LABEL_SUFFIXES = new Set(['co.uk', 'com.au', 'co.jp', 'com.br', 'co.nz', 'co.in', 'com.cn', 'github.io', 'amazonaws.com', 'azurecr.io', 'cloudfront.net'])

export class UpstreamCredentials {
  /** host → its entries (the host-only one and those with a repository prefix). */
  private readonly byHost = new Map<string, RegistryCredential[]>()
  /** realm host → registry host whose challenge named it (same registrable domain only). */
  private readonly learnedRealms = new Map<string, string>()

  constructor (entries: readonly RegistryCredential[], private readonly helpers?: CredentialHelpers) {
    for (const e of entries) {
      const h = hostKey(e.host)
      this.byHost.set(h, [...(this.byHost.get(h) ?? []), e])
    }
  }

  static none (): UpstreamCredentials {
    return new UpstreamCredentials([])
  }

  /** Configured entries and helpers. */
  get size (): number {
    return [...this.byHost.values()].reduce((n, es) => n + es.length, 0) + (this.helpers?.size ?? 0)
  }

  /**
   * The AUTH_REGISTRIES credential for requests to `host` about `repositories` (see the header for
   * the choice): configured for it, for another name of its family, or for the registry whose
   * challenge named `host` as its realm. Undefined when none applies.
   */
  forHost (host: string, repositories: readonly string[] = []): RegistryCredential | undefined {
    return this.configuredFor(this.registryOf(host), repositories)
  }

  /**
   * The AUTH_REGISTRIES credential to send to token realm `realmHost` when `registryHost`
   * challenged: the realm's own entry, or the registry's when the realm is trusted for it.
   * Undefined means "ask anonymously" (or a helper, see resolveForRealm).
   */
  forRealm (realmHost: string, registryHost: string, repositories: readonly string[] = []): RegistryCredential | undefined {
    const realm = hostKey(realmHost)
    const own = this.byHost.has(realm) ? this.configuredFor(realm, repositories) : undefined
    if (own !== undefined) return own
    return realmTrusted(realm, hostKey(registryHost)) ? this.forHost(registryHost, repositories) : undefined
  }

  /**
   * Whether the operator's credential applies to `host` and `repository`: an entry, or a helper
   * whose latest answer was a credential (access-policy.ts shares what those can read).
   */
  configured (host: string, repository?: string): boolean {
    if (this.forHost(host, repository !== undefined ? [repository] : []) !== undefined) return true
    const entry = this.helperFor(this.registryOf(host))
    return entry !== undefined && this.helpers?.answered(entry) === true
  }

  /** forHost, else the family's credential helper (run or cached). Rejects with a 502 ProxyError. */
  async resolve (host: string, repositories: readonly string[] = []): Promise<ResolvedCredential | undefined> {
    return this.forHost(host, repositories) ?? await this.fromHelper(this.helperFor(this.registryOf(host)))
  }

  /** forRealm, else the helper of the realm or of the registry it is trusted for. */
  async resolveForRealm (realmHost: string, registryHost: string, repositories: readonly string[] = []): Promise<ResolvedCredential | undefined> {
    const c = this.forRealm(realmHost, registryHost, repositories)
    if (c !== undefined) return c
    const realm = hostKey(realmHost)
    const entry = this.helperFor(realm) ?? (realmTrusted(realm, hostKey(registryHost)) ? this.helperFor(this.registryOf(registryHost)) : undefined)
    return await this.fromHelper(entry)
  }

  /**
   * The upstream refused `c` (a 401): a helper's answer is forgotten and the helper asked again.
   * The fresh credential, or undefined when `c` was not a helper's or the helper gave the same.
   */
  async refresh (c: ResolvedCredential | undefined): Promise<ResolvedCredential | undefined> {
    if (c?.helper === undefined || this.helpers === undefined) return undefined
    this.helpers.invalidate(c.helper)
    const fresh = await this.fromHelper(c.helper)
    return fresh !== undefined && (fresh.password !== c.password || fresh.username !== c.username) ? fresh : undefined
  }

  /** Remembers that `registryHost`'s challenge named `realmHost` (only a trusted realm is kept). */
  learnRealm (registryHost: string, realmHost: string): void {
    const realm = hostKey(realmHost)
    const registry = hostKey(registryHost)
    const known = this.familyEntries(registry).length > 0 || this.helperFor(registry) !== undefined
    if (realm !== registry && realmTrusted(realm, registry) && known) this.learnedRealms.set(realm, registry)
  }

  /** Hosts, repository prefixes and user names, never passwords: for start-up logs. */
  describe (): Array<{ host: string, repository?: string, username: string }> {
    return [...this.byHost.values()].flat().map(c => ({ host: c.host, ...(c.repository !== undefined ? { repository: c.repository } : {}), username: c.username }))
  }

  /** `host`, or the registry whose challenge named `host` as its realm. */
  private registryOf (host: string): string {
    const h = hostKey(host)
    return this.byHost.has(h) || this.helpers?.entryFor([h]) !== undefined ? h : this.learnedRealms.get(h) ?? h
  }

  /**
   * The entry for `host` or another name of its family: the longest repository prefix of one of
   * `repositories` if they all agree on it, else the host-only entry (the host's own first).
   */
  private configuredFor (host: string, repositories: readonly string[]): RegistryCredential | undefined {
    const entries = this.familyEntries(host)
    const fallback = entries.find(e => e.repository === undefined)
    if (repositories.length === 0) return fallback
    const picks = new Set(repositories.map(r => longestPrefix(entries, r) ?? fallback))
    return picks.size === 1 ? [...picks][0] : fallback
  }

  /** Entries of `host` itself first, then those of the other names of its family. */
  private familyEntries (host: string): RegistryCredential[] {
    const family = FAMILIES.find(f => f.includes(host)) ?? []
    return [host, ...family.filter(m => m !== host)].flatMap(h => this.byHost.get(h) ?? [])
  }

  private helperFor (host: string): CredentialHelperEntry | undefined {
    return this.helpers?.entryFor([host, ...(FAMILIES.find(f => f.includes(host)) ?? [])])
  }

  private async fromHelper (entry: CredentialHelperEntry | undefined): Promise<ResolvedCredential | undefined> {
    if (entry === undefined || this.helpers === undefined) return undefined
    const answer: HelperCredential | undefined = await this.helpers.get(entry)
    return answer === undefined ? undefined : { host: answer.host, username: answer.username, password: answer.password, identityToken: answer.identityToken, helper: entry }
  }
}

/** The entry whose repository prefix is the longest whole-segment prefix of `repository`. */
function longestPrefix (entries: readonly RegistryCredential[], repository: string): RegistryCredential | undefined {
  let best: RegistryCredential | undefined
  for (const e of entries) {
    const p = e.repository
    if (p === undefined || (repository !== p && !repository.startsWith(`${p}/`))) continue
    if (best?.repository === undefined || p.length > best.repository.length) best = e
  }
  return best
}

/** The repositories a request is about: `/v2/<name>/…`, or the `scope`s of a token request. */
export function repositoriesOf (path: string): string[] {
  const named = repositoryOfPath(path)
  if (named !== undefined) return [named.repository]
  const q = path.indexOf('?')
  return repositoriesOfScopes(new URLSearchParams(q === -1 ? '' : path.slice(q + 1)).getAll('scope'))
}

/** `repository:<name>:<actions>` scopes (space-separated within one too) → the names. */
export function repositoriesOfScopes (scopes: readonly string[]): string[] {
  return [...new Set(scopes.flatMap(s => s.split(' ')).map(s => /^repository:([^:]+):/.exec(s)?.[1]).filter((r): r is string => r !== undefined))]
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
