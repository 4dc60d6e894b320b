/**
 * The registry door: what a request on the registry port (REGISTRY_PORT) means, decided here and
 * nowhere else. The path parsing is registry-door-path.ts; this wires each meaning to its handler:
 *
 *   client ─► registry server ─► handle(req) ─┬─ POST /warm, /import/… ─► crossdock's own API (ownRoutes)
 *                                             ├─ /setup/…, /metrics… ─► extra routes (GET/HEAD)
 *                                             ├─ upstream ns ─► authorize (pull) ─► MirrorRouter
 *                                             │                 drop Authorization      (door 'registry':
 *                                             │                                          reads cached,
 *                                             │                                          writes 405)
 *                                             ├─ refused ────► NAME_UNKNOWN / NAME_INVALID
 *                                             └─ hosted ─────► hosted registry (never through mirror/)
 *
 * A mount whose `from` names an upstream namespace is the hosted registry's, with upstream-mount.ts.
 *
 * The MirrorRouter is injected: the composition root builds it over the upstream client this door
 * should use (AuthenticatingUpstream: crossdock does the token dance, its clients cannot).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { OciError, writeOciError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Authorizer } from '../oci/authorizer.js'
import type { MirrorContext } from '../mirror/mirror-router.js'
import type { HostedRegistry } from '../registry/hosted-registry.js'
import { parseDoorRequest, UpstreamNames, type DoorRoute } from './registry-door-path.js'
import { loggablePath } from '../observability/request-log.js'

export type DoorHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>

export interface RegistryDoorOptions {
  /** config.registries: the upstreams a namespace may name. */
  registries: readonly string[]
  /** config.hostedHostnames: `?ns=` naming one of these is a hosted pull. */
  hostedHostnames?: readonly string[]
  /** The hosted registry: every request that names no upstream. */
  hosted: Pick<HostedRegistry, 'handle'>
  /** The pull-through router over this door's upstream client. */
  mirror: { handle: (req: IncomingMessage, res: ServerResponse, ctx: MirrorContext) => Promise<void> }
  /** Client access control (HTPASSWD_FILE); absent: everyone may pull. */
  authorize?: Authorizer
  /** crossdock's own API on this port (POST /warm, /import/cache/…): the handler of a request it claims. */
  ownRoutes?: (req: IncomingMessage) => DoorHandler | undefined
  /** Plain GET/HEAD paths answered on the registry port too (`/setup/containerd`). */
  extraRoutes?: Record<string, (req: IncomingMessage, res: ServerResponse) => void | Promise<void>>
  log: Logger
}

export interface RegistryDoor {
  /** Answers one request on the registry port completely. */
  handle: DoorHandler
  /** The routing decision alone (tests, logs). */
  parse: (req: IncomingMessage) => DoorRoute
}

const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

export function createRegistryDoor (opts: RegistryDoorOptions): RegistryDoor {
  const log = opts.log.child({ module: 'registry-door' })
  const upstreams = new UpstreamNames(opts.registries)
  const hostedNames = new Set((opts.hostedHostnames ?? []).map(h => h.toLowerCase()))

  const parse = (req: IncomingMessage): DoorRoute => parseDoorRequest(req.url ?? '/', {
    upstreams,
    isSelf: ns => {
      const n = ns.toLowerCase()
      const self = String(req.headers.host ?? '').toLowerCase()
      return n === self || hostedNames.has(n) || hostedNames.has(n.replace(/:\d+$/, ''))
    },
  })

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET'
    const own = opts.ownRoutes?.(req)
    if (own !== undefined) { await own(req, res); return }
    const extra = opts.extraRoutes?.[pathnameOf(req.url)]
    if (extra !== undefined && (method === 'GET' || method === 'HEAD')) { await extra(req, res); return }
    const decision = parse(req)
    if (decision.kind === 'hosted') {
      await opts.hosted.handle(req, res, { door: 'registry' })
      return
    }
    if (decision.kind === 'refuse') {
      req.resume()
      writeOciError(res, decision.error, method)
      return
    }
    try {
      const namespace = `${decision.host}/${decision.repository}`
      await opts.authorize?.(req, { action: WRITES.has(method) ? 'push' : 'pull', name: namespace })
    } catch (err) {
      if (!(err instanceof OciError)) throw err
      req.resume()
      writeOciError(res, err, method)
      return
    }
    // A client's Authorization on this port is for crossdock (HTPASSWD_FILE), never for an
    // upstream: the door's upstream client does the token dance itself (design §3).
    delete req.headers.authorization
    // distribution-spec (main branch, "Registry Proxying"): a registry scoping a request by `ns`
    // SHOULD say so with OCI-Namespace. The value passed parseDoorRequest: a configured registry.
    if (decision.via === 'ns') res.setHeader('OCI-Namespace', nsOf(req.url))
    log.debug({ method, path: loggablePath(req.url), host: decision.host, repository: decision.repository, upstreamPath: loggablePath(decision.path), via: decision.via }, 'registry door: upstream namespace')
    await opts.mirror.handle(req, res, { host: decision.host, door: 'registry', path: decision.path, allowPush: false })
  }

  return { handle, parse }
}

function nsOf (url: string | undefined): string {
  const raw = url ?? '/'
  const q = raw.indexOf('?')
  return q === -1 ? '' : new URLSearchParams(raw.slice(q + 1)).get('ns') ?? ''
}

function pathnameOf (url: string | undefined): string {
  const raw = url ?? '/'
  const q = raw.indexOf('?')
  return q === -1 ? raw : raw.slice(0, q)
}
