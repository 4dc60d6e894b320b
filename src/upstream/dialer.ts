/**
 * The one way crossdock opens a TCP connection to the outside: used by raw CONNECT tunnels and by
 * the undici agent that talks to upstream registries.
 *
 *   dial(host, port)
 *     ├─ UPSTREAM_CONNECT_TO override?  host:port → address:toPort (name kept for SNI/Host/cert checks by callers)
 *     ├─ UPSTREAM_PROXY set?  TCP to the proxy → "CONNECT target" → 200 → the socket is the tunnel
 *     └─ else                 TCP straight to the target (IPv4 only with DISABLE_IPV6)
 *
 * Every path has a connect timeout and ends in a connected net.Socket or a rejected promise whose
 * error carries an errno-like `code` (see errors.ts proxyErrorFrom).
 */
import net from 'node:net'
import type { ConnectTo } from '../config/index.js'

export interface DialerOptions {
  connectTo: ConnectTo[]
  upstreamProxy?: URL
  disableIpv6: boolean
  connectTimeoutMs: number
}

export interface DialTarget {
  host: string
  port: number
}

export class Dialer {
  constructor (private readonly opts: DialerOptions) {}

  /** Where a connection meant for host:port actually goes (UPSTREAM_CONNECT_TO), or the same. */
  resolve (host: string, port: number): DialTarget {
    const h = host.toLowerCase()
    for (const e of this.opts.connectTo) {
      if ((e.host === '' || e.host === h) && (e.port === 0 || e.port === port)) return { host: e.address, port: e.toPort }
    }
    return { host: h, port }
  }

  async dial (host: string, port: number, signal?: AbortSignal): Promise<net.Socket> {
    const target = this.resolve(host, port)
    const proxy = this.opts.upstreamProxy
    if (proxy === undefined) return await this.tcp(target, signal)
    const sock = await this.tcp({ host: proxy.hostname.replace(/^\[|\]$/g, ''), port: Number(proxy.port || 80) }, signal)
    try {
      await connectThrough(sock, target, proxy, this.opts.connectTimeoutMs)
      return sock
    } catch (err) {
      sock.destroy()
      throw err
    }
  }

  private async tcp (target: DialTarget, signal?: AbortSignal): Promise<net.Socket> {
    return await new Promise((resolve, reject) => {
      const sock = net.connect({
        host: target.host,
        port: target.port,
        family: this.opts.disableIpv6 ? 4 : undefined,
        noDelay: true,
        signal,
      })
      const timer = setTimeout(() => {
        sock.destroy(Object.assign(new Error(`connect to ${target.host}:${target.port} timed out`), { code: 'ETIMEDOUT' }))
      }, this.opts.connectTimeoutMs)
      sock.once('connect', () => { clearTimeout(timer); sock.removeListener('error', onError); resolve(sock) })
      const onError = (err: Error): void => { clearTimeout(timer); reject(err) }
      sock.once('error', onError)
    })
  }
}

/** Speaks HTTP CONNECT on `sock` to an egress proxy and resolves once it answered 200. */
async function connectThrough (sock: net.Socket, target: DialTarget, proxy: URL, timeoutMs: number): Promise<void> {
  const authority = target.host.includes(':') ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`
  const auth = proxy.username !== ''
    ? `Proxy-Authorization: Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}\r\n`
    : ''
  sock.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${auth}\r\n`)
  await new Promise<void>((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const timer = setTimeout(() => fail(Object.assign(new Error(`upstream proxy ${proxy.host} did not answer CONNECT`), { code: 'ETIMEDOUT' })), timeoutMs)
    const cleanup = (): void => {
      clearTimeout(timer)
      sock.removeListener('data', onData)
      sock.removeListener('error', fail)
      sock.removeListener('end', onEnd)
    }
    function fail (err: Error): void { cleanup(); reject(err) }
    function onEnd (): void { fail(Object.assign(new Error(`upstream proxy ${proxy.host} closed the connection`), { code: 'ECONNRESET' })) }
    function onData (chunk: Buffer): void {
      buf = Buffer.concat([buf, chunk])
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) {
        if (buf.length > 16384) fail(new Error(`upstream proxy ${proxy.host} sent an oversized response head`))
        return
      }
      cleanup()
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(buf.subarray(0, end).toString('latin1'))?.[1]
      if (status !== '200') {
        reject(Object.assign(new Error(`upstream proxy ${proxy.host} refused CONNECT ${authority}: ${status ?? 'malformed answer'}`), { code: 'ERR_UPSTREAM_PROXY' }))
        return
      }
      const rest = buf.subarray(end + 4)
      if (rest.length > 0) sock.unshift(rest)
      resolve()
    }
    sock.on('data', onData)
    sock.once('error', fail)
    sock.once('end', onEnd)
  })
}
