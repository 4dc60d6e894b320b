/**
 * Parses the authority of a CONNECT request line: `host:port`, `[v6]:port`. The port is required
 * (RFC 9110 §9.3.6); hosts are checked so that no absurd or malformed name reaches the dialer or
 * the certificate minter, and come back in their one canonical spelling (`0x7f000001`, `127.1`,
 * `2130706433` are `127.0.0.1`; `::FFFF:127.0.0.1` is `::ffff:7f00:1`), as the OS would read them.
 */
import net from 'node:net'
import { canonicalHost } from '../upstream/destination-policy.js'

export interface Authority {
  host: string
  port: number
}

// Labels of 1 to 63 characters (RFC 1035 §2.3.4): first + at most 61 + last.
const DNS_NAME = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/

export function parseAuthority (value: string | undefined): Authority | undefined {
  if (value === undefined || value.length > 300) return undefined
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value)
  if (m === null) return undefined
  const port = Number(m[3])
  if (port < 1 || port > 65535) return undefined
  if (m[1] !== undefined) {
    const host = net.isIPv6(m[1]) ? canonicalHost(m[1]) : undefined
    return host !== undefined ? { host, port } : undefined
  }
  const raw = m[2].toLowerCase()
  const host = canonicalHost(raw)
  if (host !== undefined && (net.isIPv4(host) || DNS_NAME.test(raw))) return { host, port }
  return undefined
}

/** `host:port` with IPv6 literals bracketed, as written in URLs and Host headers. */
export function formatAuthority ({ host, port }: Authority): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`
}
