/**
 * Header hygiene between a client and an upstream. Hop-by-hop headers (RFC 9110 §7.6.1) belong to
 * one connection and are never forwarded, in either direction; undici also refuses some of them.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings',
])

export type HeaderMap = Record<string, string | string[]>

/** A copy of `headers` without hop-by-hop headers, those named in `Connection`, and `omit`. */
export function stripHopByHop (headers: IncomingHttpHeaders | OutgoingHttpHeaders | Record<string, unknown>, omit: string[] = []): HeaderMap {
  const named = new Set<string>(omit)
  const connection = headers.connection
  if (typeof connection === 'string') for (const n of connection.split(',')) named.add(n.trim().toLowerCase())
  const out: HeaderMap = {}
  for (const [k, v] of Object.entries(headers)) {
    const key = k.toLowerCase()
    if (v === undefined || v === null || HOP_BY_HOP.has(key) || named.has(key)) continue
    out[key] = Array.isArray(v) ? v.map(String) : String(v)
  }
  return out
}

export function headerValue (headers: Record<string, unknown>, name: string): string | undefined {
  const v = headers[name]
  if (v === undefined || v === null) return undefined
  return Array.isArray(v) ? String(v[0]) : String(v)
}
