/**
 * A real HTTPS_PROXY client for tests: CONNECT through crossdock's proxy door, then TLS to the
 * target name trusting only the CA given (crossdock's), as dockerd does with SSL_CERT_FILE.
 */
import http from 'node:http'
import tls from 'node:tls'
import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'

export interface ProxiedResponse {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
  /** The certificate the client saw for the target. */
  peerCertificate: tls.PeerCertificate
}

export interface ProxiedRequest {
  proxyPort: number
  /** The proxy door's address (default 127.0.0.1; e2e files listen on their own loopback address). */
  proxyHost?: string
  host: string
  port?: number
  ca: string
  method?: string
  path: string
  headers?: Record<string, string>
  body?: Buffer | Readable
  proxyAuthorization?: string
}

/** Opens CONNECT host:port through the proxy and returns the raw tunnel socket (after 200). */
export async function connectThrough (proxyPort: number, authority: string, headers: Record<string, string> = {}, proxyHost = '127.0.0.1'): Promise<{ status: number, socket: import('node:net').Socket, body: string }> {
  return await new Promise((resolve, reject) => {
    const req = http.request({ host: proxyHost, port: proxyPort, method: 'CONNECT', path: authority, headers: { host: authority, ...headers } })
    req.once('connect', (res, socket, head: Buffer) => {
      if (res.statusCode === 200) { resolve({ status: 200, socket, body: '' }); return }
      // Bytes that arrived with the response head are handed over here, not as 'data'.
      let body = head.toString()
      socket.on('data', d => { body += d.toString() })
      socket.on('close', () => resolve({ status: res.statusCode ?? 0, socket, body }))
      socket.on('error', () => resolve({ status: res.statusCode ?? 0, socket, body }))
    })
    req.once('error', reject)
    req.end()
  })
}

export async function proxiedRequest (r: ProxiedRequest): Promise<ProxiedResponse> {
  const authority = `${r.host}:${r.port ?? 443}`
  const tunnel = await connectThrough(r.proxyPort, authority, r.proxyAuthorization !== undefined ? { 'proxy-authorization': r.proxyAuthorization } : {}, r.proxyHost)
  if (tunnel.status !== 200) throw Object.assign(new Error(`CONNECT ${authority} answered ${tunnel.status}: ${tunnel.body}`), { status: tunnel.status, body: tunnel.body })
  const socket = tls.connect({ socket: tunnel.socket, servername: r.host, ca: r.ca })
  await new Promise<void>((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject) })
  const peerCertificate = socket.getPeerCertificate()
  return await new Promise((resolve, reject) => {
    const req = http.request({
      createConnection: () => socket,
      host: r.host,
      method: r.method ?? 'GET',
      path: r.path,
      headers: { host: r.host, ...r.headers },
    }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { socket.destroy(); resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), peerCertificate }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    if (r.body === undefined) req.end()
    else if (Buffer.isBuffer(r.body)) req.end(r.body)
    else r.body.pipe(req)
  })
}

export function sha256 (data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}
