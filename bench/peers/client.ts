/**
 * The benchmark's registry client: one request to a contender's endpoint, counting body bytes
 * without keeping them, with time to first byte, an optional read-rate limit (a slow client) and
 * an optional byte budget (the client hangs up after it).
 *
 * Endpoints: plain HTTP (a registry port, nginx), HTTPS (the upstream itself), or CONNECT to a
 * proxy door and TLS inside the tunnel (crossdock's MITM door). `prefix` goes in front of the
 * repository: crossdock's registry door names the upstream in the path (`/v2/docker.io/library/…`).
 */
import http from 'node:http'
import https from 'node:https'
import tls from 'node:tls'
import type { Duplex } from 'node:stream'

export interface Endpoint {
  mode: 'http' | 'https' | 'connect'
  host: string
  port: number
  /** TLS name (https: the server's; connect: the upstream asked for in CONNECT). */
  servername?: string
  ca?: string
  prefix: string
}

export interface RequestOptions {
  method?: 'GET' | 'HEAD'
  /** `/v2/<repository>/…` as the upstream would see it; the endpoint's prefix is added. */
  path: string
  headers?: Record<string, string>
  rateBytesPerSec?: number
  /** Hang up after this many body bytes. */
  maxBytes?: number
  /** A keep-alive agent from `keepAliveAgent` (default: a new connection for this request). */
  agent?: http.Agent
}

export interface Response { status: number, bytes: number, ttfbSeconds: number, seconds: number, headers: http.IncomingHttpHeaders }

export const MANIFEST_ACCEPT = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ')

/** The path a contender is asked for: `/v2/<prefix><rest>`. */
export function pathFor (ep: Endpoint, v2Path: string): string {
  return `/v2/${ep.prefix}${v2Path.slice('/v2/'.length)}`
}

/** An agent that opens each connection as the endpoint needs (CONNECT + TLS for a proxy door). */
export function agentFor (ep: Endpoint, keepAlive: boolean): http.Agent {
  if (ep.mode === 'http') return new http.Agent({ keepAlive, maxSockets: 256 })
  if (ep.mode === 'https') return new https.Agent({ keepAlive, maxSockets: 256, ca: ep.ca, servername: ep.servername, highWaterMark: 256 * 1024 } as https.AgentOptions)
  const agent = new http.Agent({ keepAlive, maxSockets: 256 })
  // Node's Agent accepts an asynchronous createConnection that answers through its callback.
  ;(agent as unknown as { createConnection: (o: unknown, cb: (err: Error | null, s?: Duplex) => void) => undefined }).createConnection = (_o, cb) => {
    const name = ep.servername ?? 'registry-1.docker.io'
    const req = http.request({ host: ep.host, port: ep.port, method: 'CONNECT', path: `${name}:443`, agent: false })
    req.once('connect', (res, raw) => {
      if (res.statusCode !== 200) { raw.destroy(); cb(new Error(`CONNECT ${res.statusCode}`)); return }
      const sock = tls.connect({ socket: raw, servername: name, ca: ep.ca, highWaterMark: 256 * 1024 } as tls.ConnectionOptions)
      sock.once('secureConnect', () => cb(null, sock))
      sock.once('error', err => cb(err))
    })
    req.once('error', err => cb(err))
    req.end()
    return undefined
  }
  return agent
}

export async function request (ep: Endpoint, o: RequestOptions): Promise<Response> {
  const agent = o.agent ?? agentFor(ep, false)
  const started = performance.now()
  const lib = ep.mode === 'https' ? https : http
  const host = ep.mode === 'http' ? `${ep.host}:${ep.port}` : (ep.servername ?? ep.host)
  let settled = false
  return await new Promise<Response>((resolve, reject) => {
    const fail = (err: Error): void => { if (!settled) { settled = true; if (o.agent === undefined) agent.destroy(); reject(err) } }
    const req = lib.request({ host: ep.host, port: ep.mode === 'connect' ? 443 : ep.port, method: o.method ?? 'GET', path: pathFor(ep, o.path), agent, headers: { host, ...o.headers } }, res => {
      let bytes = 0
      let ttfb = o.method === 'HEAD' ? (performance.now() - started) / 1000 : -1
      const done = (): void => {
        if (settled) return
        settled = true
        if (o.agent === undefined) agent.destroy()
        resolve({ status: res.statusCode ?? 0, bytes, ttfbSeconds: ttfb, seconds: (performance.now() - started) / 1000, headers: res.headers })
      }
      res.on('data', (c: Buffer) => {
        if (ttfb < 0) ttfb = (performance.now() - started) / 1000
        bytes += c.length
        if (o.maxBytes !== undefined && bytes >= o.maxBytes) { res.destroy(); req.destroy(); done(); return }
        if (o.rateBytesPerSec !== undefined) {
          const wait = started + (bytes / o.rateBytesPerSec) * 1000 - performance.now()
          if (wait > 5) { res.pause(); setTimeout(() => res.resume(), wait) }
        }
      })
      res.once('end', done)
      res.once('error', fail)
      res.once('close', () => { if (!res.complete) fail(new Error(`${o.path}: connection closed after ${bytes} bytes`)) })
    })
    req.once('error', fail)
    req.end()
  })
}
