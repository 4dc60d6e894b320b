/**
 * The one way crossdock opens a TCP connection to the outside: used by raw CONNECT tunnels and by
 * the undici agent that talks to upstream registries (redirect hops and token realms included).
 *
 *   dial(host, port, { purpose })
 *     ├─ destination policy on the name (destination-policy.ts; UPSTREAM_CONNECT_TO mappings exempt)
 *     ├─ UPSTREAM_CONNECT_TO override?  host:port → address:toPort (name kept for SNI/Host/cert checks by callers)
 *     ├─ UPSTREAM_PROXY set?  TCP to the proxy → "CONNECT target" → 200 → the socket is the tunnel
 *     │                       (the egress proxy resolves the name: only names and literals are judged)
 *     └─ else                 TCP to the target; names resolve inside net.connect through `lookup`,
 *                             which judges every address before Node connects to exactly those
 *                             (IPv4 only with DISABLE_IPV6). A name with any refused address is refused.
 *
 * Every path has a connect timeout and ends in a connected net.Socket or a rejected promise whose
 * error carries an errno-like `code` (see errors.ts proxyErrorFrom), or a DestinationRefused (403).
 */
import dns from 'node:dns'
import net from 'node:net'
import type { ConnectTo } from '../config/index.js'
import { DestinationPolicy, type CheckedName, type DialPurpose } from './destination-policy.js'

/** Resolves a name to its addresses (dns.lookup by default; tests inject their own). */
export type Resolver = (hostname: string, family: 0 | 4 | 6) => Promise<dns.LookupAddress[]>

export interface DialerOptions {
  connectTo: ConnectTo[]
  upstreamProxy?: URL
  disableIpv6: boolean
  connectTimeoutMs: number
  /** Default: a DestinationPolicy with the default refusals only. */
  policy?: DestinationPolicy
  resolver?: Resolver
}

export interface DialOptions {
  /** Default `upstream`. */
  purpose?: DialPurpose
  signal?: AbortSignal
  /** Overrides connectTimeoutMs (tunnels use PROXY_CONNECT_CONNECT_TIMEOUT). */
  timeoutMs?: number
}

const systemResolver: Resolver = async (hostname, family) => await dns.promises.lookup(hostname, { all: true, family })

export interface DialTarget {
  host: string
  port: number
}

export class Dialer {
  /** The destination policy this dialer applies (UpstreamClient reports redirect refusals through it). */
  readonly policy: DestinationPolicy
  private readonly resolver: Resolver

  constructor (private readonly opts: DialerOptions) {
    this.policy = opts.policy ?? new DestinationPolicy()
    this.resolver = opts.resolver ?? systemResolver
  }

  /** Where a connection meant for host:port actually goes (UPSTREAM_CONNECT_TO), or the same. */
  resolve (host: string, port: number): DialTarget {
    return this.mapped(host, port) ?? { host: host.toLowerCase(), port }
  }

  async dial (host: string, port: number, opts: DialOptions = {}): Promise<net.Socket> {
    const mapped = this.mapped(host, port)
    const checked = this.policy.checkName(host, port, opts.purpose ?? 'upstream', mapped !== undefined)
    const target = mapped ?? { host: checked.host, port }
    const timeoutMs = opts.timeoutMs ?? this.opts.connectTimeoutMs
    const proxy = this.opts.upstreamProxy
    if (proxy === undefined) return await this.tcp(target, timeoutMs, opts.signal, mapped === undefined ? checked : undefined)
    this.policy.checkUnresolved(checked)
    const sock = await this.tcp({ host: proxy.hostname.replace(/^\[|\]$/g, ''), port: Number(proxy.port || 80) }, timeoutMs, opts.signal)
    try {
      await connectThrough(sock, target, proxy, timeoutMs)
      return sock
    } catch (err) {
      sock.destroy()
      throw err
    }
  }

  private mapped (host: string, port: number): DialTarget | undefined {
    const h = host.toLowerCase()
    for (const e of this.opts.connectTo) {
      if ((e.host === '' || e.host === h) && (e.port === 0 || e.port === port)) return { host: e.address, port: e.toPort }
    }
    return undefined
  }

  /**
   * net.connect's `lookup` for a name under the policy: resolves once, judges every address and
   * hands Node exactly the addresses judged (it connects to those, happy eyeballs included).
   */
  private checkedLookup (checked: CheckedName): net.LookupFunction {
    return ((hostname: string, options: dns.LookupOptions, callback: (err: Error | null, address: string | dns.LookupAddress[], family?: number) => void) => {
      const family = options.family === 4 || options.family === 6 ? options.family : 0
      this.resolver(hostname, family).then(addresses => {
        if (addresses.length === 0) throw Object.assign(new Error(`${hostname}: no address`), { code: 'ENOTFOUND' })
        for (const a of addresses) this.policy.checkAddress(checked, a.address)
        if (options.all === true) callback(null, addresses)
        else callback(null, addresses[0].address, addresses[0].family)
      }).catch(err => callback(err as Error, ''))
    }) as unknown as net.LookupFunction
  }

  private async tcp (target: DialTarget, timeoutMs: number, signal?: AbortSignal, checked?: CheckedName): Promise<net.Socket> {
    return await new Promise((resolve, reject) => {
      const sock = net.connect({
        host: target.host,
        port: target.port,
        family: this.opts.disableIpv6 ? 4 : undefined,
        noDelay: true,
        signal,
        // Literals never reach `lookup` (they were judged in checkName); names always do.
        lookup: checked !== undefined ? this.checkedLookup(checked) : undefined,
      })
      const timer = setTimeout(() => {
        sock.destroy(Object.assign(new Error(`connect to ${target.host}:${target.port} timed out`), { code: 'ETIMEDOUT' }))
      }, timeoutMs)
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
