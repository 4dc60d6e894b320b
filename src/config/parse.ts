/**
 * Value parsers for configuration. Each throws a ConfigError whose message names the variable, the
 * value it was given and what is expected — the one line an operator sees before anything listens.
 */
import net, { isIP } from 'node:net'
import { ConfigError } from '../errors.js'

export function fail (name: string, value: string, expected: string): never {
  throw new ConfigError(`${name}=${JSON.stringify(value)}: expected ${expected}`, { variable: name, value, expected })
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }

/** nginx size syntax: `1024`, `512k`, `100m`, `32g` (case-insensitive; `t` also accepted). */
export function parseSize (name: string, value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*$/i.exec(value)
  if (m === null) fail(name, value, 'a size such as 1024, 512k, 100m or 32g')
  const bytes = Math.floor(Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()])
  if (!Number.isSafeInteger(bytes)) fail(name, value, 'a size below 8 PiB')
  return bytes
}

/** A rate in bytes per second, written as a size (`12m`: 12 MiB/s). */
export function parseRate (name: string, value: string): number {
  try {
    return parseSize(name, value)
  } catch {
    fail(name, value, 'bytes per second written as a size, such as 12m (12 MiB/s, about 100 Mbit/s), or 0')
  }
}

const DURATION_UNITS: Record<string, number> = {
  ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000, M: 30 * 86_400_000, y: 365 * 86_400_000,
}

/** nginx time syntax: `60s`, `10m`, `1h30m`, `60d`; a bare number means seconds. Returns milliseconds. */
export function parseDuration (name: string, value: string): number {
  const v = value.trim()
  if (/^\d+$/.test(v)) return Number(v) * 1000
  const re = /(\d+)(ms|s|m|h|d|w|M|y)/g
  let total = 0
  let consumed = 0
  for (const m of v.matchAll(re)) {
    if (m.index !== consumed) break
    total += Number(m[1]) * DURATION_UNITS[m[2]]
    consumed += m[0].length
  }
  if (v === '' || consumed !== v.length) fail(name, value, 'a duration such as 30s, 10m, 1h30m or 60d')
  return total
}

export function parseBool (name: string, value: string): boolean {
  const v = value.trim().toLowerCase()
  if (['true', '1', 'yes', 'on'].includes(v)) return true
  if (['false', '0', 'no', 'off', ''].includes(v)) return false
  fail(name, value, 'true or false')
}

export function parsePort (name: string, value: string): number {
  const v = value.trim()
  if (!/^\d+$/.test(v) || Number(v) > 65535) fail(name, value, 'a TCP port number from 0 to 65535')
  return Number(v)
}

// A registry host as clients write it: DNS name or IPv4, optional :port. Lower-cased.
const HOST_RE = /^(?=.{1,253}(?::\d+)?$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/

export function parseHost (name: string, value: string): string {
  const v = value.trim().toLowerCase()
  if (!HOST_RE.test(v)) fail(name, value, 'host names such as ghcr.io or registry.internal:5000')
  return v
}

/** Splits a list on commas and/or white space, dropping empties. */
export function splitList (value: string): string[] {
  return value.split(/[\s,]+/).filter(s => s !== '')
}

export interface ConnectTo {
  host: string
  port: number
  address: string
  toPort: number
}

/**
 * `host:port:address:port` entries, like curl --connect-to: a connection meant for host:port goes to
 * address:port while SNI, Host and certificate checks keep the real host name. An empty host or
 * port matches any; an IPv6 address is written in brackets.
 */
export function parseConnectTo (name: string, value: string): ConnectTo[] {
  return splitList(value).map(entry => {
    const m = /^([^:[\]]*):(\d*):(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d+)$/.exec(entry)
    if (m === null) fail(name, entry, 'entries host:port:address:port such as registry-1.docker.io:443:127.0.0.12:5443')
    const address = m[3].startsWith('[') ? m[3].slice(1, -1) : m[3]
    return { host: m[1].toLowerCase(), port: m[2] === '' ? 0 : parsePort(name, m[2]), address, toPort: parsePort(name, m[4]) }
  })
}

export interface RegistryCredential {
  host: string
  /** A repository prefix (`auth.docker.io/myorg:…`): the entry applies to that part of the registry only. */
  repository?: string
  username: string
  password: string
}

// A repository prefix after the host: non-empty lower-case path segments. (It is compared with
// repository names as a string prefix, so no name grammar is needed here: one that is not a valid
// name simply never matches.)
const REPOSITORY_PREFIX_RE = /^[a-z0-9._-]+(?:\/[a-z0-9._-]+)*$/

/**
 * rpardini's AUTH_REGISTRIES: entries separated by `entrySep`, each `host<fieldSep>user<fieldSep>pass`.
 * The password is everything after the second separator, so a GCR `_json_key` JSON survives whole.
 */
export function parseAuthRegistries (name: string, value: string, entrySep: string, fieldSep: string): RegistryCredential[] {
  const out: RegistryCredential[] = []
  const seen = new Set<string>()
  for (const raw of value.split(entrySep)) {
    const entry = entrySep.trim() === '' ? raw.trim() : raw.replace(/^\s+|\s+$/g, '')
    if (entry === '') continue
    const first = entry.indexOf(fieldSep)
    const second = first < 0 ? -1 : entry.indexOf(fieldSep, first + fieldSep.length)
    const target = (first < 0 ? entry : entry.slice(0, first)).trim().toLowerCase()
    // Never the entry itself in the message: with the wrong separator, it may be a password.
    if (second < 0) fail(name, value, `entry ${out.length + 1} as host${fieldSep}user${fieldSep}password (separators: entries by AUTH_REGISTRIES_DELIMITER=${JSON.stringify(entrySep)}, fields by AUTH_REGISTRY_DELIMITER=${JSON.stringify(fieldSep)})`)
    const slash = target.indexOf('/')
    const host = slash < 0 ? target : target.slice(0, slash)
    const repository = slash < 0 ? undefined : target.slice(slash + 1)
    if (!HOST_RE.test(host)) fail(name, value, `entry ${out.length + 1} to start with a host name such as ghcr.io`)
    if (repository !== undefined && !REPOSITORY_PREFIX_RE.test(repository)) fail(name, value, `entry ${out.length + 1} as host/repository-prefix such as auth.docker.io/myorg (${JSON.stringify(target.slice(0, 100))} has no valid repository prefix)`)
    if (seen.has(target)) fail(name, value, `one credential per host or host/repository prefix (two entries for ${target})`)
    seen.add(target)
    out.push({ host, ...(repository !== undefined ? { repository } : {}), username: entry.slice(first + fieldSep.length, second), password: entry.slice(second + fieldSep.length) })
  }
  return out
}

export function parseRegex (name: string, value: string): RegExp {
  try {
    return new RegExp(value)
  } catch (err) {
    fail(name, value, `a regular expression (${(err as Error).message})`)
  }
}

export function parseLogLevel (name: string, value: string): string {
  const v = value.trim().toLowerCase()
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(v)) fail(name, value, 'one of fatal, error, warn, info, debug, trace, silent')
  return v
}

/** An address to listen on: an IPv4 or IPv6 literal (a name would be resolved, and might not be ours). */
export function parseListenHost (name: string, value: string): string {
  const v = value.trim()
  if (isIP(v) === 0) fail(name, value, 'an IP address of this host such as 0.0.0.0, 127.0.0.1 or ::')
  return v
}

export function parseChoice<T extends string> (name: string, value: string, choices: readonly T[]): T {
  const v = value.trim().toLowerCase()
  if (!(choices as readonly string[]).includes(v)) fail(name, value, `one of ${choices.join(', ')}`)
  return v as T
}

export function parseUrl (name: string, value: string, protocols: string[]): URL {
  let u: URL
  try {
    u = new URL(value)
  } catch {
    fail(name, value, `a URL such as ${protocols[0]}//proxy.internal:3128`)
  }
  if (!protocols.includes(u.protocol)) fail(name, value, `a URL with scheme ${protocols.join(' or ')}`)
  return u
}

/** A TUNNEL_ALLOW / TUNNEL_DENY entry: a host glob (`*.docker.io`) or an address block (`10.0.0.0/8`, `fd00::/8`, `10.1.2.3`). */
export type DestinationRule =
  | { kind: 'glob', glob: string }
  | { kind: 'cidr', address: string, prefix: number, family: 'ipv4' | 'ipv6' }

const GLOB_RE = /^(?=.{1,253}$)(\*|[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)(\.(\*|[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?))*$/

/** Space or comma separated host globs and CIDRs; addresses are read by node:net, not by a pattern. */
export function parseDestinationRules (name: string, value: string): DestinationRule[] {
  return splitList(value).map(entry => {
    const slash = entry.indexOf('/')
    const address = (slash < 0 ? entry : entry.slice(0, slash)).replace(/^\[|\]$/g, '')
    const family = net.isIP(address)
    if (family !== 0) {
      const max = family === 4 ? 32 : 128
      const prefixText = slash < 0 ? String(max) : entry.slice(slash + 1)
      const prefix = Number(prefixText)
      if (!/^\d{1,3}$/.test(prefixText) || prefix > max) fail(name, entry, `a CIDR prefix from 0 to ${max}`)
      return { kind: 'cidr', address, prefix, family: family === 4 ? 'ipv4' : 'ipv6' }
    }
    const glob = entry.toLowerCase().replace(/\.$/, '')
    if (slash >= 0 || !GLOB_RE.test(glob)) fail(name, entry, 'host globs such as *.docker.io or CIDRs such as 10.0.0.0/8')
    return { kind: 'glob', glob }
  })
}

/** A whole number of at least `min` (MAX_TUNNELS; PREFETCH_CONCURRENCY, where 0 means off). */
export function parseCount (name: string, value: string, min = 1): number {
  const v = value.trim()
  if (!/^\d{1,9}$/.test(v) || Number(v) < min) fail(name, value, `a whole number of at least ${min}`)
  return Number(v)
}
