/**
 * Raw TCP tunnels for CONNECTs to hosts crossdock does not intercept: bytes pass untouched both
 * ways (TLS stays end-to-end between the client and the far end). Backpressure comes from pipe();
 * either side closing or failing tears down both. One log line per tunnel, at its end.
 *
 *   CONNECT ─► MAX_TUNNELS reached? 503 ─► dial (destination policy, PROXY_CONNECT_CONNECT_TIMEOUT)
 *     ├─ refused 403 / failed 502 / timed out 504, one line of text
 *     └─ "200" ─► client ⇄ far until: either side closes or errs, or
 *                 PROXY_CONNECT_READ_TIMEOUT without a byte to or from the far end, or
 *                 PROXY_CONNECT_SEND_TIMEOUT without a byte to or from the client
 *
 * The idle timers are what bound half-open tunnels: a client that sent FIN keeps the tunnel
 * readable (HTTP servers allow half-open sockets) until the far end closes too or falls silent.
 * Node's socket timeout counts reads and completed writes, so a peer that stopped reading (writes
 * stuck behind backpressure) is idle as well.
 */
import { STATUS_CODES } from 'node:http'
import type net from 'node:net'
import type { Logger } from '../log.js'
import type { TunnelObserver } from '../observability/metrics.js'
import { proxyErrorFrom } from '../errors.js'
import type { Dialer } from '../upstream/dialer.js'
import { DestinationRefused } from '../upstream/destination-policy.js'
import type { Authority } from './connect-authority.js'
import { formatAuthority } from './connect-authority.js'

export interface TunnelLimits {
  connectTimeoutMs: number
  readTimeoutMs: number
  sendTimeoutMs: number
  maxTunnels: number
}

/** The defaults of PROXY_CONNECT_*_TIMEOUT (rpardini's image) and MAX_TUNNELS, for servers built without a Config. */
export const DEFAULT_TUNNEL_LIMITS: TunnelLimits = { connectTimeoutMs: 60_000, readTimeoutMs: 60_000, sendTimeoutMs: 60_000, maxTunnels: 1024 }

export class Tunnels {
  private count = 0

  constructor (private readonly dialer: Dialer, private readonly log: Logger, private readonly limits: TunnelLimits, private readonly observe?: TunnelObserver) {}

  /** Tunnels open or being dialled. */
  get size (): number {
    return this.count
  }

  /** Answers the CONNECT on `client` and relays until the tunnel ends; resolves once it is set up (or refused). */
  async open (client: net.Socket, head: Buffer, target: Authority): Promise<void> {
    const authority = formatAuthority(target)
    if (this.count >= this.limits.maxTunnels) {
      this.log.warn({ door: 'proxy', host: authority, status: 503, remote: client.remoteAddress, maxTunnels: this.limits.maxTunnels }, 'too many tunnels')
      answer(client, 503, `crossdock: too many open tunnels (MAX_TUNNELS=${this.limits.maxTunnels})`)
      return
    }
    this.count++
    let released = false
    const release = (): void => { if (!released) { released = true; this.count-- } }
    client.once('close', release)
    const started = performance.now()
    let far: net.Socket
    try {
      far = await this.dialer.dial(target.host, target.port, { purpose: 'tunnel', timeoutMs: this.limits.connectTimeoutMs })
    } catch (err) {
      const e = proxyErrorFrom(err, authority)
      this.observe?.failed(e.status === 504 ? 'timeout' : 'failed')
      // A refusal was logged once by the policy's reporter; other failures are logged here.
      if (!(err instanceof DestinationRefused)) this.log.warn({ door: 'proxy', host: authority, status: e.status, err: e.message, cacheStatus: 'TUNNEL' }, 'tunnel failed')
      answer(client, e.status, e.message)
      release()
      return
    }
    if (client.destroyed) { far.destroy(); release(); return }
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    const observe = this.observe
    observe?.opened()
    // Counted as they pass, not at the end: a tunnel may stay open for hours.
    if (observe !== undefined) {
      client.on('data', (b: Buffer) => observe.bytes('up', b.length))
      far.on('data', (b: Buffer) => observe.bytes('down', b.length))
    }
    if (head.length > 0) { far.write(head); observe?.bytes('up', head.length) }
    let closed = false
    const close = (why: string): void => {
      if (closed) return
      closed = true
      observe?.closed()
      client.destroy()
      far.destroy()
      release()
      this.log.info({
        door: 'proxy', host: authority, method: 'CONNECT', cacheStatus: 'TUNNEL', status: 200, closed: why,
        bytesUp: far.bytesWritten, bytesDown: far.bytesRead, ms: Math.round(performance.now() - started),
      }, 'tunnel')
    }
    far.setTimeout(this.limits.readTimeoutMs, () => close('PROXY_CONNECT_READ_TIMEOUT'))
    client.setTimeout(this.limits.sendTimeoutMs, () => close('PROXY_CONNECT_SEND_TIMEOUT'))
    client.on('error', () => close('client error')).on('close', () => close('client closed'))
    far.on('error', () => close('far end error')).on('close', () => close('far end closed'))
    client.pipe(far)
    far.pipe(client)
  }
}

/** A one-line plain-text answer to a CONNECT, then the connection is closed. */
export function answer (client: net.Socket, status: number, message: string): void {
  if (!client.writable) { client.destroy(); return }
  const body = `${message}\n`
  client.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
}
