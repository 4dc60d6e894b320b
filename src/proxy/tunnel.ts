/**
 * A raw TCP tunnel for CONNECTs to hosts crossdock does not intercept: bytes pass untouched both
 * ways (TLS stays end-to-end between the client and the far end). Backpressure comes from pipe();
 * either side closing or failing tears down both. One log line per tunnel, at its end.
 */
import type net from 'node:net'
import type { Logger } from '../log.js'
import type { TunnelObserver } from '../observability/metrics.js'
import { proxyErrorFrom } from '../errors.js'
import type { Dialer } from '../upstream/dialer.js'
import type { Authority } from './connect-authority.js'
import { formatAuthority } from './connect-authority.js'

export async function openTunnel (client: net.Socket, head: Buffer, target: Authority, dialer: Dialer, log: Logger, observe?: TunnelObserver): Promise<void> {
  const started = performance.now()
  const authority = formatAuthority(target)
  let far: net.Socket
  try {
    far = await dialer.dial(target.host, target.port)
  } catch (err) {
    const e = proxyErrorFrom(err, authority)
    observe?.failed(e.status === 504 ? 'timeout' : 'failed')
    log.warn({ door: 'proxy', host: authority, status: e.status, err: e.message, cacheStatus: 'TUNNEL' }, 'tunnel failed')
    if (client.writable) client.end(`HTTP/1.1 ${e.status} ${e.status === 504 ? 'Gateway Timeout' : 'Bad Gateway'}\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(e.message) + 1}\r\n\r\n${e.message}\n`)
    return
  }
  if (client.destroyed) { far.destroy(); return }
  client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
  observe?.opened()
  // Counted as they pass, not at the end: a tunnel may stay open for hours.
  if (observe !== undefined) {
    client.on('data', (b: Buffer) => observe.bytes('up', b.length))
    far.on('data', (b: Buffer) => observe.bytes('down', b.length))
  }
  if (head.length > 0) { far.write(head); observe?.bytes('up', head.length) }
  let closed = false
  const close = (): void => {
    if (closed) return
    closed = true
    observe?.closed()
    client.destroy()
    far.destroy()
    log.info({
      door: 'proxy', host: authority, method: 'CONNECT', cacheStatus: 'TUNNEL', status: 200,
      bytesUp: far.bytesWritten, bytesDown: far.bytesRead, ms: Math.round(performance.now() - started),
    }, 'tunnel')
  }
  client.on('error', close).on('close', close)
  far.on('error', close).on('close', close)
  client.pipe(far)
  far.pipe(client)
}
