/**
 * The one destination policy for everything crossdock dials on a client's behalf: raw CONNECT
 * tunnels, the hops of upstream redirects and token realms. (UPSTREAM_PROXY itself is the
 * operator's and is not checked.) The Dialer applies it on the address it really connects to:
 *
 *   host ──canonicalHost (WHATWG URL: 0x7f000001, 127.1, 2130706433, 0177.0.0.1 → 127.0.0.1)──►
 *     checkName: TUNNEL_DENY globs · REGISTRIES / UPSTREAM_CONNECT_TO are operator intent (exempt)
 *     ├─ IP literal ──────────────────────────────► checkAddress(literal) ─► connect to it
 *     └─ name ─► lookup (inside net.connect) ─► checkAddress(each address) ─► connect to those
 *                (the addresses checked are the ones connected to: no second resolution to rebind)
 *
 * checkAddress, in order: crossdock's own listening sockets (a loop) · TUNNEL_DENY CIDRs ·
 * TUNNEL_ALLOW CIDRs (explicit operator intent, may open loopback) · the default refusals
 * (loopback, link-local, unspecified, multicast; IPv4-mapped IPv6 is checked as IPv4) · for tunnels
 * with TUNNEL_ALLOW set, only what it names. Private ranges are allowed: internal registries live
 * there. TUNNEL_ALLOW restricts tunnels only: redirect targets (CDNs) and token realms are not
 * enumerable in advance, the default refusals and TUNNEL_DENY cover them.
 *
 * A refusal is a DestinationRefused (a 403 ProxyError with a one-line reason), reported once to
 * `onRefused` (the log line and the metric).
 */
import net from 'node:net'
import os from 'node:os'
import { ProxyError } from '../errors.js'
import type { DestinationRule } from '../config/index.js'

/** What the dial is for: a raw tunnel (TUNNEL_ALLOW applies) or an upstream request. */
export type DialPurpose = 'tunnel' | 'upstream'

/** Bounded: used as a metric label. */
export type RefusalReason = 'loopback' | 'link-local' | 'unspecified' | 'multicast' | 'own-address' | 'denied' | 'not-allowed' | 'insecure-scheme' | 'invalid'

export class DestinationRefused extends ProxyError {
  constructor (readonly reason: RefusalReason, readonly destination: string, readonly purpose: DialPurpose, why: string) {
    super(403, 'ERR_DESTINATION_REFUSED', `crossdock refuses to connect to ${destination}: ${why}`)
    this.name = 'DestinationRefused'
  }
}

export interface RefusalReport {
  reason: RefusalReason
  destination: string
  purpose: DialPurpose
}

export interface DestinationPolicyOptions {
  /** TUNNEL_ALLOW: when non-empty, tunnels go only to these host globs and CIDRs. */
  allow?: readonly DestinationRule[]
  /** TUNNEL_DENY: refused on top of the defaults, for every purpose. */
  deny?: readonly DestinationRule[]
  /** REGISTRIES hosts (`host` = port 443, or `host:port`): the operator's own upstreams, exempt. */
  trustedHosts?: readonly string[]
  /** crossdock's listening sockets (read at each check: ports are known only once listening). */
  ownSockets?: () => Array<{ address: string, port: number }>
  /** Called once per refusal (log line, metric). Must not throw. */
  onRefused?: (r: RefusalReport) => void
}

/** The result of checkName: what the Dialer connects to and how the resolved addresses are judged. */
export interface CheckedName {
  /** Canonical host: an IP literal (unbracketed) or a lower-case name. */
  host: string
  port: number
  purpose: DialPurpose
  /** Operator intent (REGISTRIES, UPSTREAM_CONNECT_TO): addresses are not checked. */
  exempt: boolean
  /** The name matched a TUNNEL_ALLOW glob. */
  allowedByName: boolean
}

// The default refusals, by address block (RFC 6890 special-purpose registry).
const DEFAULT_REFUSED: Array<[string, number, 'ipv4' | 'ipv6', RefusalReason, string]> = [
  ['127.0.0.0', 8, 'ipv4', 'loopback', 'a loopback address'],
  ['::1', 128, 'ipv6', 'loopback', 'a loopback address'],
  ['169.254.0.0', 16, 'ipv4', 'link-local', 'a link-local address (cloud metadata lives there)'],
  ['fe80::', 10, 'ipv6', 'link-local', 'a link-local address'],
  ['0.0.0.0', 8, 'ipv4', 'unspecified', 'an unspecified address (it reaches this host)'],
  ['::', 128, 'ipv6', 'unspecified', 'an unspecified address (it reaches this host)'],
  ['224.0.0.0', 4, 'ipv4', 'multicast', 'a multicast address'],
  ['255.255.255.255', 32, 'ipv4', 'multicast', 'a broadcast address'],
  ['ff00::', 8, 'ipv6', 'multicast', 'a multicast address'],
]
const DEFAULT_BLOCKS = DEFAULT_REFUSED.map(([address, prefix, family, reason, why]) => {
  const list = new net.BlockList()
  list.addSubnet(address, prefix, family)
  return { list, reason, why }
})
const IPV4_MAPPED = new net.BlockList()
IPV4_MAPPED.addSubnet('::ffff:0:0', 96, 'ipv6')

/**
 * The host as the OS and every URL parser will read it, through the WHATWG URL host parser (the
 * same rules as inet_aton for numeric IPv4 spellings). IPv6 comes back unbracketed and compressed;
 * undefined for something that is not a host.
 */
export function canonicalHost (host: string): string | undefined {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
  // Characters the URL parser would read as the end of the host (a path, a port, userinfo).
  if (bare === '' || (!net.isIPv6(bare) && /[/\\?#@:\s]/.test(bare))) return undefined
  let parsed: string
  try {
    parsed = new URL(`http://${net.isIPv6(bare) ? `[${bare}]` : bare}/`).hostname
  } catch {
    return undefined
  }
  if (parsed === '') return undefined
  return parsed.startsWith('[') ? parsed.slice(1, -1) : parsed.replace(/\.$/, '')
}

/** `::ffff:a.b.c.d` (any spelling) as `a.b.c.d`; any other address unchanged. */
export function unmapIpv4 (address: string): string {
  if (net.isIPv6(address) && IPV4_MAPPED.check(address, 'ipv6')) {
    const canonical = canonicalHost(address) ?? address
    const [hi, lo] = canonical.split(':').slice(-2).map(h => parseInt(h, 16))
    return [hi >> 8, hi & 255, lo >> 8, lo & 255].join('.')
  }
  return address
}

/** A matcher for host globs (`*.docker.io`: any name ending in `.docker.io`) and CIDRs. */
class RuleSet {
  private readonly globs: RegExp[] = []
  private readonly cidrs = new net.BlockList()
  readonly size: number

  constructor (rules: readonly DestinationRule[]) {
    for (const r of rules) {
      if (r.kind === 'cidr') this.cidrs.addSubnet(r.address, r.prefix, r.family)
      else this.globs.push(new RegExp(`^${r.glob.split('*').map(escapeRegExp).join('.*')}$`, 'i'))
    }
    this.size = rules.length
  }

  matchesName (host: string): boolean {
    return this.globs.some(g => g.test(host))
  }

  matchesAddress (address: string): boolean {
    return this.cidrs.check(address, net.isIPv6(address) ? 'ipv6' : 'ipv4')
  }
}

export class DestinationPolicy {
  private readonly allow: RuleSet
  private readonly deny: RuleSet
  private readonly trusted: Set<string>
  private readonly ownSockets: () => Array<{ address: string, port: number }>
  private readonly onRefused: (r: RefusalReport) => void

  constructor (opts: DestinationPolicyOptions = {}) {
    this.allow = new RuleSet(opts.allow ?? [])
    this.deny = new RuleSet(opts.deny ?? [])
    this.trusted = new Set((opts.trustedHosts ?? []).map(h => h.toLowerCase()))
    this.ownSockets = opts.ownSockets ?? (() => [])
    this.onRefused = opts.onRefused ?? (() => {})
  }

  /**
   * Judges the name before any resolution; throws a DestinationRefused. `mapped`: the operator sent
   * this host:port elsewhere with UPSTREAM_CONNECT_TO (its address is theirs, not the client's).
   */
  checkName (host: string, port: number, purpose: DialPurpose, mapped = false): CheckedName {
    const canonical = canonicalHost(host)
    if (canonical === undefined) throw this.refuse('invalid', host, port, purpose, 'not a host name or address')
    if (this.deny.matchesName(canonical)) throw this.refuse('denied', canonical, port, purpose, 'named in TUNNEL_DENY')
    const trusted = purpose === 'upstream' && (this.trusted.has(`${canonical}:${port}`) || (port === 443 && this.trusted.has(canonical)))
    const checked = { host: canonical, port, purpose, exempt: mapped || trusted, allowedByName: this.allow.matchesName(canonical) }
    if (net.isIP(canonical) !== 0) this.checkAddress(checked, canonical)
    // A mapping exempts the address (the operator's), not the name from TUNNEL_ALLOW.
    else if (mapped) this.checkUnresolved({ ...checked, exempt: false })
    return checked
  }

  /** Judges one address `checked.host` resolved to (or the literal itself); throws a DestinationRefused. */
  checkAddress (checked: CheckedName, address: string): void {
    if (checked.exempt) return
    const a = unmapIpv4(address)
    const family = net.isIPv6(a) ? 'ipv6' : 'ipv4'
    const refuse = (reason: RefusalReason, why: string): DestinationRefused => this.refuse(reason, checked.host, checked.port, checked.purpose, why, a)
    if (this.isOwnSocket(a, checked.port)) throw refuse('own-address', 'that is crossdock itself')
    if (this.deny.matchesAddress(a)) throw refuse('denied', 'in a TUNNEL_DENY range')
    const allowedByAddress = this.allow.matchesAddress(a)
    if (!allowedByAddress) {
      const block = DEFAULT_BLOCKS.find(b => b.list.check(a, family))
      if (block !== undefined) throw refuse(block.reason, `${block.why}; TUNNEL_ALLOW can open a CIDR explicitly`)
    }
    if (checked.purpose === 'tunnel' && this.allow.size > 0 && !checked.allowedByName && !allowedByAddress) throw refuse('not-allowed', 'not in TUNNEL_ALLOW')
  }

  /**
   * Through UPSTREAM_PROXY the egress proxy resolves names, so only the name can be judged here
   * (literals were judged in checkName).
   */
  checkUnresolved (checked: CheckedName): void {
    if (checked.exempt || net.isIP(checked.host) !== 0) return
    if (checked.purpose === 'tunnel' && this.allow.size > 0 && !checked.allowedByName) {
      throw this.refuse('not-allowed', checked.host, checked.port, checked.purpose, 'not in TUNNEL_ALLOW')
    }
  }

  /**
   * Creates (and reports) a refusal; also for rules decided elsewhere, such as a redirect's scheme.
   * `address`: what `host` resolved to (or unmapped to), shown when it differs.
   */
  refuse (reason: RefusalReason, host: string, port: number | undefined, purpose: DialPurpose, why: string, address?: string): DestinationRefused {
    const authority = port === undefined ? host : net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`
    const destination = address !== undefined && address !== host ? `${authority} (${address})` : authority
    this.onRefused({ reason, destination, purpose })
    return new DestinationRefused(reason, destination, purpose, why)
  }

  private isOwnSocket (address: string, port: number): boolean {
    for (const own of this.ownSockets()) {
      if (own.port !== port) continue
      const listening = unmapIpv4(own.address)
      if (listening === address) return true
      // Listening on 0.0.0.0 / ::: every local address (and the unspecified one) reaches crossdock.
      if ((listening === '0.0.0.0' || listening === '::') && (address === '0.0.0.0' || address === '::' || isLocalAddress(address))) return true
    }
    return false
  }
}

function isLocalAddress (address: string): boolean {
  const family = net.isIPv6(address) ? 'ipv6' : 'ipv4'
  if (DEFAULT_BLOCKS.some(b => b.reason === 'loopback' && b.list.check(address, family))) return true
  return Object.values(os.networkInterfaces()).some(list => list?.some(i => unmapIpv4(i.address) === address))
}

function escapeRegExp (s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
