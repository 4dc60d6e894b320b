/**
 * The registry port's server (REGISTRY_PORT): plain HTTP, or HTTPS when REGISTRY_TLS_CERT/KEY are
 * set. Every request is logged and handed to `handle` (the registry door, registry-door.ts, which
 * decides hosted vs pull-through). `requestTimeout: 0`: a multi-GB push may take longer than
 * Node's default 300 s.
 */
import { readFileSync } from 'node:fs'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { Config } from '../config/index.js'
import type { Logger } from '../log.js'
import { logRequest, loggablePath, type RequestObserver } from '../observability/request-log.js'
import { headCheckIntervalMs } from '../util/client-head.js'

export type RegistryRequestHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>

export interface RegistryServerOptions {
  config: Pick<Config, 'timeouts' | 'registryTlsCert' | 'registryTlsKey' | 'registryPort' | 'listenHost'>
  log: Logger
  /** Answers every request completely. */
  handle: RegistryRequestHandler
  /** Also fed every request's log line (metrics). */
  observe?: RequestObserver
}

export interface RegistryServer {
  server: http.Server | https.Server
  /** Serves one request as if it had arrived on the registry port (the proxy door's absolute-URI requests to us). */
  handle: (req: IncomingMessage, res: ServerResponse) => void
  /** Listens on `port`/`host` (default REGISTRY_PORT/LISTEN_HOST; 0 picks a free port). */
  listen: (port?: number, host?: string) => Promise<AddressInfo>
  /** Stops accepting, ends idle keep-alive connections, and waits for in-flight requests. */
  close: () => Promise<void>
}

export function createRegistryServer (opts: RegistryServerOptions): RegistryServer {
  const log = opts.log.child({ module: 'registry-server' })
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    // Logged when the response closes, not on 'finish': that never fires when a client hangs up.
    logRequest(log, req, res, { door: 'registry' }, opts.observe)
    opts.handle(req, res).catch(err => {
      log.error({ err, method: req.method, path: loggablePath(req.url) }, 'unhandled error')
      if (!res.headersSent) { res.statusCode = 500; res.end() } else res.destroy()
    })
  }
  const serverOpts = {
    requestTimeout: 0,
    keepAliveTimeout: opts.config.timeouts.keepAliveMs,
    headersTimeout: opts.config.timeouts.clientHeaderMs,
    // Node checks headersTimeout only this often (30 s by default): see util/client-head.ts.
    connectionsCheckingInterval: headCheckIntervalMs(opts.config.timeouts.clientHeaderMs),
  }
  const server = opts.config.registryTlsCert !== undefined && opts.config.registryTlsKey !== undefined
    ? https.createServer({ ...serverOpts, cert: readFileSync(opts.config.registryTlsCert), key: readFileSync(opts.config.registryTlsKey) }, onRequest)
    : http.createServer(serverOpts, onRequest)

  return {
    server,
    handle: onRequest,
    listen: async (port = opts.config.registryPort, host = opts.config.listenHost) => {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(port, host, () => { server.off('error', reject); resolve() })
      })
      return server.address() as AddressInfo
    },
    close: async () => {
      const closed = new Promise<void>(resolve => server.close(() => resolve()))
      // Keep-alive connections that finish their request after close() would otherwise linger
      // until KEEPALIVE_TIMEOUT; end each one as soon as it is idle. In-flight requests complete.
      const sweep = setInterval(() => server.closeIdleConnections(), 100)
      server.closeIdleConnections()
      try { await closed } finally { clearInterval(sweep) }
    },
  }
}
