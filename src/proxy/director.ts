/**
 * Plain-HTTP paths on the proxy port (requests whose target is a path, not a CONNECT):
 * `/` says the proxy works (and its version; the status page instead for browsers, when the app
 * plugs one in), `/ca.crt` serves the root CA (never its key),
 * `/setup/systemd` a host setup script. Other paths (health, metrics, containerd setup) are added
 * by the app through `extraRoutes`.
 *
 * Absolute-URI requests (`GET http://cache:5000/v2/…`, what a client sends its HTTP_PROXY) are
 * served in-process when they name our own registry door (own-door.ts), and refused otherwise: no
 * open relay. A refused `/v2/` request gets an OCI error body, so `docker push` prints the reason
 * instead of "invalid character 'c' looking for beginning of value".
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { OciError, writeOciError } from '../errors.js'
import { VERSION } from '../version.js'
import { scriptAuthority } from './setup-scripts.js'
import { systemdSetup } from './systemd-setup.js'
import type { OwnDoorCheck } from './own-door.js'

export type DirectorRoute = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>

export interface DirectorOptions {
  caCertPem: () => string
  proxyPort: number
  extraRoutes?: Record<string, DirectorRoute>
  /** Our own registry door, for absolute-URI requests addressed to it. */
  registryDoor?: { isOwn: OwnDoorCheck, handle: (req: IncomingMessage, res: ServerResponse) => void }
  /** Wraps `/`'s plain answer: the status page answers browsers and calls it for everyone else. */
  statusPage?: (plain: DirectorRoute) => DirectorRoute
}

export function createDirector (opts: DirectorOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const plain: DirectorRoute = (_req, res) => text(res, 200, `crossdock ${VERSION}: the docker caching proxy is working!\n`)
  const routes: Record<string, DirectorRoute> = {
    '/': opts.statusPage?.(plain) ?? plain,
    '/ca.crt': (_req, res) => {
      const pem = opts.caCertPem()
      res.writeHead(200, { 'content-type': 'application/x-x509-ca-cert', 'content-length': Buffer.byteLength(pem), 'content-disposition': 'attachment; filename="crossdock-ca.crt"' })
      res.end(pem)
    },
    '/setup/systemd': (req, res) => {
      const q = new URL(req.url ?? '/', 'http://x').searchParams
      const r = systemdSetup({
        authority: scriptAuthority(req.headers.host, opts.proxyPort),
        localAddress: req.socket.localAddress,
        service: q.get('service'),
        noProxy: q.get('no_proxy'),
        caPem: opts.caCertPem(),
      })
      if ('refused' in r) text(res, 400, r.refused)
      else text(res, 200, r.script, 'text/x-shellscript; charset=utf-8')
    },
    ...opts.extraRoutes,
  }
  return async (req, res) => {
    const target = req.url ?? '/'
    if (!target.startsWith('/')) {
      const url = URL.canParse(target) ? new URL(target) : undefined
      const port = url === undefined ? 0 : Number(url.port !== '' ? url.port : (url.protocol === 'https:' ? 443 : 80))
      if (url?.protocol === 'http:' && opts.registryDoor !== undefined && await opts.registryDoor.isOwn(url.hostname, port)) {
        req.url = `${url.pathname}${url.search}`
        opts.registryDoor.handle(req, res)
        return
      }
      const reason = `crossdock: not an open HTTP proxy: ${target.slice(0, 200)} is not this crossdock's registry door; add its host to NO_PROXY, or use CONNECT (HTTPS_PROXY) for registries`
      if (url?.pathname.startsWith('/v2/') === true) writeOciError(res, new OciError('DENIED', reason, { status: 403 }), req.method)
      else text(res, 403, `${reason}\n`)
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
