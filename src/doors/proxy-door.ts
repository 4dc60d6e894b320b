/**
 * The proxy door (PROXY_PORT): what an intercepted CONNECT means, decided here and nowhere else.
 * The proxy server (proxy/proxy-server.ts) asks `shouldIntercept` for each CONNECT target and hands
 * every request of a terminated TLS session to `handle`:
 *
 *   CONNECT host:port ─► shouldIntercept?
 *     ├─ host ∈ HOSTED_HOSTNAMES ──► TLS ─► handle ─► hosted registry             (door 'proxy')
 *     ├─ host ∈ REGISTRIES ────────► TLS ─► handle ─► MirrorRouter(upstream host) (door 'proxy',
 *     │                                                                            writes: ALLOW_PUSH)
 *     └─ anything else ────────────► raw tunnel (proxy/tunnel.ts, destination policy)
 *
 * A configured `host:port` entry intercepts that port; a bare host intercepts 443. Requests that
 * name the registry door itself (absolute-URI or CONNECT) never get here: proxy/own-door.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { formatAuthority, parseAuthority, type Authority } from '../proxy/connect-authority.js'
import type { MirrorContext } from '../mirror/mirror-router.js'
import type { HostedRegistry } from '../registry/hosted-registry.js'

export interface ProxyDoorOptions {
  /** config.registries: upstreams whose TLS we terminate and cache. */
  registries: readonly string[]
  /** config.hostedHostnames: names under which the hosted registry is reached through the proxy. */
  hostedHostnames: readonly string[]
  /** ALLOW_PUSH: may writes to an upstream pass through? */
  allowPush: boolean
  hosted: Pick<HostedRegistry, 'handle'>
  /** The pull-through router over the proxy door's upstream client. */
  mirror: { handle: (req: IncomingMessage, res: ServerResponse, ctx: MirrorContext) => Promise<void> }
}

export interface ProxyDoor {
  /** For createProxyServer({ shouldIntercept }): terminate TLS for this CONNECT target? */
  shouldIntercept: (target: Authority) => boolean
  /** For loadClientAuth({ anonymousConnect }): a CONNECT authority we terminate (so each request is checked again). */
  intercepts: (authority: string) => boolean
  /** For createProxyServer({ onIntercepted }): answers one request of an intercepted session. */
  handle: (req: IncomingMessage, res: ServerResponse, target: Authority) => Promise<void>
}

export function createProxyDoor (opts: ProxyDoorOptions): ProxyDoor {
  const upstreams = new Set(opts.registries)
  const hostedNames = new Set(opts.hostedHostnames)
  const matches = (names: Set<string>, t: Authority): boolean => names.has(formatAuthority(t)) || (t.port === 443 && names.has(t.host))
  const shouldIntercept = (t: Authority): boolean => matches(upstreams, t) || matches(hostedNames, t)
  // The upstream client wants `host` for 443 and `host:port` otherwise.
  const upstreamHost = (t: Authority): string => t.port === 443 ? t.host : formatAuthority(t)

  return {
    shouldIntercept,
    intercepts: authority => { const t = parseAuthority(authority); return t !== undefined && shouldIntercept(t) },
    handle: async (req, res, target) => {
      if (matches(hostedNames, target)) {
        await opts.hosted.handle(req, res, { door: 'proxy' })
        return
      }
      await opts.mirror.handle(req, res, { host: upstreamHost(target), door: 'proxy', path: req.url ?? '/', allowPush: opts.allowPush })
    },
  }
}
