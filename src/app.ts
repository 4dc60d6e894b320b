/**
 * The composition root: config → logger → CA → leaf minter → upstream client → mirror → servers.
 * `start()` listens on both doors; `stop()` closes them. Tests start the same app on port 0.
 */
import type { AddressInfo } from 'node:net'
import type http from 'node:http'
import type { Config } from './config/index.js'
import type { Logger } from './log.js'
import { loadOrCreateCa } from './tls/ca.js'
import { LeafCertMinter } from './tls/leaf-certs.js'
import { Dialer } from './upstream/dialer.js'
import { UpstreamClient } from './upstream/upstream-client.js'
import { MirrorRouter } from './mirror/mirror-router.js'
import { createDirector } from './proxy/director.js'
import { createProxyServer, type ProxyServer } from './proxy/proxy-server.js'
import { formatAuthority, parseAuthority, type Authority } from './proxy/connect-authority.js'
import { openCacheStore } from './cache/cache-store.js'
import { createPullThrough } from './mirror/pull-through.js'
import { createHostedRegistry } from './registry/hosted-registry.js'
import { createRegistryServer } from './registry/registry-server.js'
import { createRegistryDoor } from './mirror/registry-door.js'
import { containerdSetupRoute } from './proxy/setup-scripts.js'
import { loadClientAuth } from './auth/client-auth.js'

export interface App {
  start: () => Promise<void>
  stop: () => Promise<void>
  /** `host:port` of each door once started. */
  addresses: () => { proxy: string, registry: string }
}

export async function createApp ({ config, log }: { config: Config, log: Logger }): Promise<App> {
  const ca = await loadOrCreateCa({ caDir: config.caDir, caCrtFile: config.caCrtFile, caKeyFile: config.caKeyFile, log: log.child({ module: 'tls' }) })
  const minter = new LeafCertMinter(ca)
  await minter.init()

  const dialer = new Dialer({
    connectTo: config.upstreamConnectTo,
    upstreamProxy: config.upstreamProxy,
    disableIpv6: config.disableIpv6,
    connectTimeoutMs: config.timeouts.connectMs,
  })
  const upstream = new UpstreamClient({
    dialer,
    verifySsl: config.verifySsl,
    upstreamCaFile: config.upstreamCaFile,
    connectTimeoutMs: config.timeouts.connectMs,
    readTimeoutMs: config.timeouts.readMs,
  })
  const cache = await openCacheStore({
    dir: config.cacheDir,
    maxSize: config.cache.maxSize,
    inactiveMs: config.cache.inactiveMs,
    minFree: config.cache.minFree,
    idleTimeoutMs: config.timeouts.readMs,
    log: log.child({ module: 'cache' }),
  })
  const mirror = new MirrorRouter(upstream, createPullThrough({ config, log, cache, upstream }))

  const intercepted = new Set(config.registries)
  const hostedNames = new Set(config.hostedHostnames)
  // A configured `host:port` entry intercepts that port; a bare host intercepts 443.
  const matches = (names: Set<string>, t: Authority): boolean => names.has(formatAuthority(t)) || (t.port === 443 && names.has(t.host))
  const shouldIntercept = (t: Authority): boolean => matches(intercepted, t) || matches(hostedNames, t)
  const upstreamHost = (t: Authority): string => t.port === 443 ? t.host : formatAuthority(t)

  const clientAuth = await loadClientAuth({
    htpasswdFile: config.htpasswdFile,
    anonymousPull: config.authAnonymousPull,
    log,
    // Anonymous CONNECTs (AUTH_ANONYMOUS_PULL) only to hosts we terminate, where each request is
    // checked again; never raw tunnels, or the proxy would be an open relay.
    anonymousConnect: a => { const t = parseAuthority(a); return t !== undefined && shouldIntercept(t) },
  })
  // Answered on both doors; the registry port is only known once it listens (REGISTRY_PORT=0).
  const containerdSetup = containerdSetupRoute({
    registryPort: () => (registry.server.address() as AddressInfo | null)?.port ?? config.registryPort,
    scheme: config.registryTlsCert !== undefined ? 'https' : 'http',
  })
  // Upstream namespaces on the registry port (`/v2/docker.io/…`, `?ns=`) share the proxy door's
  // cache. The door takes its MirrorRouter injected: it moves to one over the token-dance client
  // (AuthenticatingUpstream) once that lands, as this door's clients cannot answer challenges.
  const registryDoor = createRegistryDoor({
    registries: config.registries,
    hostedHostnames: config.hostedHostnames,
    mirror,
    cache,
    authorize: clientAuth?.authorizeAccess,
    extraRoutes: { '/setup/containerd': containerdSetup },
    log,
  })
  const hosted = await createHostedRegistry({ config, log, authorize: clientAuth?.authorizeAccess, mountSource: registryDoor.mountSource })
  const registry = createRegistryServer({ config, log, hosted, route: registryDoor.route })

  const proxyLog = log.child({ module: 'proxy' })
  const proxy: ProxyServer = createProxyServer({
    log: proxyLog,
    dialer,
    secureContextFor: async host => await minter.secureContextFor(host),
    shouldIntercept,
    allowedPorts: new Set(config.connectAllowedPorts),
    authorizeConnect: clientAuth?.authorizeConnect,
    clientHeaderTimeoutMs: config.timeouts.clientHeaderMs,
    keepAliveTimeoutMs: config.timeouts.keepAliveMs,
    onIntercepted: async (req, res, target) => {
      if (matches(hostedNames, target)) {
        await hosted.handle(req, res, { door: 'proxy' })
        return
      }
      const host = upstreamHost(target)
      await mirror.handle(req, res, { host, door: 'proxy', path: req.url ?? '/', allowPush: config.allowPush })
    },
    director: createDirector({
      caCertPem: () => ca.certPem,
      proxyPort: config.proxyPort,
      extraRoutes: { '/setup/containerd': containerdSetup },
    }),
  })

  let proxyAddress = ''
  let registryAddress = ''
  return {
    start: async () => {
      await listen(proxy.server, config.proxyPort, config.listenHost)
      proxyAddress = formatAddress(proxy.server.address() as AddressInfo)
      registryAddress = formatAddress(await registry.listen())
    },
    stop: async () => {
      await Promise.all([proxy.close(), registry.close()])
      await hosted.close()
      await cache.close()
      await upstream.close()
    },
    addresses: () => ({ proxy: proxyAddress, registry: registryAddress }),
  }
}

async function listen (server: http.Server, port: number, host: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.removeListener('error', reject); resolve() })
  })
}

function formatAddress (a: AddressInfo): string {
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`
}
