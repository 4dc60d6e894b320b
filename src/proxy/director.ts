/**
 * Plain-HTTP paths on the proxy port (requests whose target is a path, not a CONNECT):
 * `/` says the proxy works (the status page instead for browsers, when the app plugs one in), `/ca.crt` serves the root CA (never its key), `/setup/systemd` a host
 * setup script. Other paths (health, metrics, containerd setup) are added by the app through
 * `extraRoutes`. Absolute-URI requests (`GET http://elsewhere/…`) are refused: no open relay.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { systemdScript, scriptAuthority } from './setup-scripts.js'

export type DirectorRoute = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>

export interface DirectorOptions {
  caCertPem: () => string
  proxyPort: number
  extraRoutes?: Record<string, DirectorRoute>
  /** Wraps `/`'s plain answer: the status page answers browsers and calls it for everyone else. */
  statusPage?: (plain: DirectorRoute) => DirectorRoute
}

export function createDirector (opts: DirectorOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const plain: DirectorRoute = (_req, res) => text(res, 200, 'crossdock: the docker caching proxy is working!\n')
  const routes: Record<string, DirectorRoute> = {
    '/': opts.statusPage?.(plain) ?? plain,
    '/ca.crt': (_req, res) => {
      const pem = opts.caCertPem()
      res.writeHead(200, { 'content-type': 'application/x-x509-ca-cert', 'content-length': Buffer.byteLength(pem), 'content-disposition': 'attachment; filename="crossdock-ca.crt"' })
      res.end(pem)
    },
    '/setup/systemd': (req, res) => {
      const url = new URL(req.url ?? '/', 'http://x')
      const service = url.searchParams.get('service') === 'containerd' ? 'containerd' : 'docker'
      text(res, 200, systemdScript(scriptAuthority(req.headers.host, opts.proxyPort), service), 'text/x-shellscript; charset=utf-8')
    },
    ...opts.extraRoutes,
  }
  return async (req, res) => {
    const target = req.url ?? '/'
    if (!target.startsWith('/')) {
      text(res, 403, 'crossdock: not an open HTTP proxy; use CONNECT (HTTPS_PROXY) for registries\n')
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      text(res, 405, `crossdock: ${req.method ?? ''} not allowed on the proxy port\n`)
      return
    }
    const route = routes[new URL(target, 'http://x').pathname]
    if (route === undefined) {
      text(res, 404, `crossdock: no such path ${JSON.stringify(target.slice(0, 200))} on the proxy port (try /, /ca.crt, /setup/systemd)\n`)
      return
    }
    await route(req, res)
  }
}

export function text (res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) })
  res.end(res.req?.method === 'HEAD' ? undefined : body)
}
