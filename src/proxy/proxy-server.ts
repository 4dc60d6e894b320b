/**
 * The proxy door (:3128). Docker and containerd hosts set HTTPS_PROXY to it.
 *
 *   client ──CONNECT host:443──► proxy server
 *                                 ├─ host intercepted (upstream registry or HOSTED_HOSTNAMES):
 *                                 │    mint/reuse a leaf for host → "200" → TLSSocket(isServer) on the
 *                                 │    same socket → inner HTTP server → onIntercepted(req, res, host)
 *                                 └─ any other host: raw TCP tunnel, bytes untouched (tunnel.ts)
 *   client ──GET /path──────────► director (/, /ca.crt, /setup/*, /healthz, /metrics)
 *
 * Node behaviours that matter here: the TLS socket gets a 256 KiB highWaterMark (the 16 KiB default
 * costs ~25% CPU on layer downloads); the inner server has requestTimeout 0 (Node's 300 s default
 * would kill long pushes); bytes the client sent after the CONNECT head (`head`) are unshifted back
 * before TLS starts; the certificate is chosen from the CONNECT authority, not from SNI. Node
 * enforces `headersTimeout` only on servers that listen() (its connection checker starts on
 * 'listening'); the inner server never does, so intercepted sessions get their own head deadline.
 */
import http from 'node:http'
import type net from 'node:net'
import tls from 'node:tls'
import type { Logger } from '../log.js'
import type { Dialer } from '../upstream/dialer.js'
import { parseAuthority, formatAuthority, type Authority } from './connect-authority.js'
import { Tunnels, DEFAULT_TUNNEL_LIMITS, type TunnelLimits } from './tunnel.js'
import { logRequest, loggablePath, type RequestObserver } from '../observability/request-log.js'
import type { TunnelObserver } from '../observability/metrics.js'
import { trackForGracefulClose } from '../util/graceful-close.js'
import { headCheckIntervalMs, refuseClientHead } from '../util/client-head.js'

export type InterceptedHandler = (req: http.IncomingMessage, res: http.ServerResponse, target: Authority) => Promise<void>

export interface ProxyServerOptions {
  log: Logger
  dialer: Dialer
  secureContextFor: (host: string) => Promise<tls.SecureContext>
  shouldIntercept: (target: Authority) => boolean
  /** CONNECT targets on other ports are refused with 403 (no relay to arbitrary services). */
  allowedPorts: ReadonlySet<number>
  onIntercepted: InterceptedHandler
  director: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>
  /** Client access control on CONNECT; returns undefined when allowed, or a reason for 407. */
  authorizeConnect?: (req: http.IncomingMessage) => Promise<string | undefined>
  clientHeaderTimeoutMs: number
  keepAliveTimeoutMs: number
  /** PROXY_CONNECT_*_TIMEOUT and MAX_TUNNELS for raw tunnels; default rpardini's 60 s and 1024. */
  tunnelLimits?: TunnelLimits
  /** Sees every request's log line (the metrics). */
  observeRequest?: RequestObserver
  /** Our own registry door: a CONNECT to it is handed to the registry server in-process, never dialled. */
  registryDoor?: { isOwn: (host: string, port: number) => Promise<boolean>, accept: (socket: net.Socket) => void }
  /** Sees raw tunnels open, carry bytes and close (the metrics). */
  observeTunnel?: TunnelObserver
}

export interface ProxyServer {
  server: http.Server
  /** Raw tunnels open or being dialled. */
  readonly tunnels: number
  /**
   * Stops accepting and closes raw tunnels at once (opaque bytes: a busy one cannot be told from an
   * idle one). Intercepted and director requests in flight may finish for `timeoutMs` (default 0);
   * each intercepted connection is ended when its last response is done. At the deadline
   * everything left is destroyed. Resolves when every connection is gone.
   */
  close: (opts?: { timeoutMs?: number }) => Promise<void>
}

const TLS_HIGH_WATER_MARK = 256 * 1024

export function createProxyServer (opts: ProxyServerOptions): ProxyServer {
  const { log } = opts
  const tunnels = new Tunnels(opts.dialer, log, opts.tunnelLimits ?? DEFAULT_TUNNEL_LIMITS, opts.observeTunnel)
  const targets = new WeakMap<net.Socket, Authority>()
  const open = new Set<net.Socket>()
  const track = (s: net.Socket): void => { open.add(s); s.once('close', () => open.delete(s)) }
  /** Raw CONNECT sockets that carry an intercepted TLS session (they close with it). */
  const carriers = new WeakSet<net.Socket>()
  /** Requests in flight per intercepted TLS socket, so shutdown can end idle sessions and wait for busy ones. */
  const active = new WeakMap<net.Socket, number>()
  let closing = false
  /**
   * Per intercepted session, the timer that ends it when no request head arrives in time: from the
   * CONNECT's 200 (TLS handshake included) to the first head, and from each response's end to the
   * next one (after KEEPALIVE_TIMEOUT, which Node's idle timer enforces on its own). Without it a
   * client that sends half a head, or nothing after CONNECT, would hold its socket forever.
   */
  const headDeadlines = new WeakMap<net.Socket, NodeJS.Timeout>()
  const handshaken = new WeakSet<net.Socket>()
  const armHeadDeadline = (session: net.Socket, ms: number): void => {
    clearTimeout(headDeadlines.get(session))
    const timer = setTimeout(() => {
      log.debug({ remote: session.remoteAddress }, 'intercepted session sent no request head in time')
      if (handshaken.has(session)) refuseClientHead(session, Object.assign(new Error('head timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }))
      else session.destroy()
    }, ms)
    timer.unref()
    headDeadlines.set(session, timer)
  }

  const inner = http.createServer({ requestTimeout: 0, headersTimeout: opts.clientHeaderTimeoutMs, keepAliveTimeout: opts.keepAliveTimeoutMs }, (req, res) => {
    const target = targets.get(req.socket)
    if (target === undefined) { res.destroy(); return }
    const session = req.socket
    clearTimeout(headDeadlines.get(session))
    active.set(session, (active.get(session) ?? 0) + 1)
    if (closing) res.setHeader('connection', 'close')
    res.once('close', () => {
      const left = (active.get(session) ?? 1) - 1
      active.set(session, left)
      if (closing && left === 0) session.end()
      else if (left === 0 && !session.destroyed) armHeadDeadline(session, opts.keepAliveTimeoutMs + opts.clientHeaderTimeoutMs)
    })
    logRequest(log, req, res, { door: 'proxy', host: target.port === 443 ? target.host : formatAuthority(target) }, opts.observeRequest)
    opts.onIntercepted(req, res, target).catch(err => {
      log.error({ err, host: target.host, path: loggablePath(req.url) }, 'intercepted request failed')
      if (!res.headersSent) { res.writeHead(500, { 'content-type': 'text/plain' }); res.end('crossdock: internal error\n') } else res.destroy()
    })
  })
  inner.on('clientError', (err, socket) => {
    log.debug({ err: err.message }, 'intercepted client error')
    refuseClientHead(socket, err)
  })

  const server = http.createServer({
    requestTimeout: 0,
    headersTimeout: opts.clientHeaderTimeoutMs,
    connectionsCheckingInterval: headCheckIntervalMs(opts.clientHeaderTimeoutMs),
    keepAliveTimeout: opts.keepAliveTimeoutMs,
  }, (req, res) => {
    logRequest(log, req, res, { door: 'director' }, opts.observeRequest)
    opts.director(req, res).catch(err => {
      log.error({ err, path: loggablePath(req.url) }, 'director failed')
      if (!res.headersSent) { res.writeHead(500); res.end() } else res.destroy()
    })
  })
  const graceful = trackForGracefulClose(server)
  server.on('clientError', (err, socket) => {
    log.debug({ err: err.message }, 'proxy client error')
    refuseClientHead(socket, err)
  })

  server.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    track(socket)
    socket.on('error', err => log.debug({ err: err.message }, 'CONNECT socket error'))
    handleConnect(req, socket, head).catch(err => {
      log.error({ err, authority: req.url }, 'CONNECT failed')
      socket.destroy()
    })
  })

  async function handleConnect (req: http.IncomingMessage, socket: net.Socket, head: Buffer): Promise<void> {
    if (closing) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\ncrossdock: shutting down\n')
      return
    }
    const target = parseAuthority(req.url)
    if (target === undefined) {
      log.warn({ door: 'proxy', method: 'CONNECT', authority: String(req.url).slice(0, 300), status: 400 }, 'bad CONNECT authority')
      socket.end('HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\ncrossdock: CONNECT needs host:port\n')
      return
    }
    if (opts.registryDoor !== undefined && await opts.registryDoor.isOwn(target.host, target.port)) {
      // The registry server speaks on this socket as on one it accepted (TLS or not, as configured);
      // it checks client credentials per request.
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      if (head.length > 0) socket.unshift(head)
      opts.registryDoor.accept(socket)
      return
    }
    if (!opts.allowedPorts.has(target.port)) {
      log.warn({ door: 'proxy', method: 'CONNECT', host: formatAuthority(target), status: 403, remote: socket.remoteAddress }, 'CONNECT port not allowed')
      socket.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\ncrossdock: CONNECT to port ${target.port} is not allowed (CONNECT_ALLOWED_PORTS)\n`)
      return
    }
    if (opts.authorizeConnect !== undefined) {
      const refused = await opts.authorizeConnect(req)
      if (refused !== undefined) {
        log.warn({ door: 'proxy', method: 'CONNECT', host: formatAuthority(target), status: 407, remote: socket.remoteAddress }, 'proxy authentication failed')
        socket.end(`HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm="crossdock"\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\ncrossdock: ${refused}\n`)
        return
      }
    }
    if (!opts.shouldIntercept(target)) {
      await tunnels.open(socket, head, target)
      return
    }
    let secureContext: tls.SecureContext
    try {
      secureContext = await opts.secureContextFor(target.host)
    } catch (err) {
      log.error({ err, host: target.host }, 'could not mint a certificate')
      socket.end('HTTP/1.1 500 Internal Server Error\r\nconnection: close\r\n\r\n')
      return
    }
    if (socket.destroyed) return
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    if (head.length > 0) socket.unshift(head)
    const tlsSocket = new tls.TLSSocket(socket, {
      isServer: true,
      secureContext,
      ALPNProtocols: ['http/1.1'],
      highWaterMark: TLS_HIGH_WATER_MARK,
    } as tls.TLSSocketOptions)
    tlsSocket.once('secure', () => handshaken.add(tlsSocket))
    tlsSocket.once('close', () => clearTimeout(headDeadlines.get(tlsSocket)))
    armHeadDeadline(tlsSocket, opts.clientHeaderTimeoutMs)
    tlsSocket.on('error', err => {
      log.debug({ host: target.host, err: err.message }, 'intercepted TLS error')
      tlsSocket.destroy()
    })
    targets.set(tlsSocket, target)
    carriers.add(socket)
    track(tlsSocket)
    inner.emit('connection', tlsSocket)
  }

  return {
    server,
    get tunnels () { return tunnels.size },
    close: async ({ timeoutMs = 0 } = {}) => {
      closing = true
      for (const s of open) {
        if (targets.has(s)) { if ((active.get(s) ?? 0) === 0) s.end() } else if (!carriers.has(s)) s.destroy()
      }
      const cut = setTimeout(() => { for (const s of open) s.destroy() }, timeoutMs)
      // The outer server counts CONNECT sockets among its connections: this waits for them too.
      await graceful.close(timeoutMs)
      clearTimeout(cut)
    },
  }
}
