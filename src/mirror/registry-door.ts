/**
 * The registry door: the pull-through side of the registry port (REGISTRY_PORT). It gives
 * createRegistryServer its `route` hook, which claims every request naming an upstream namespace
 * (parsing in registry-door-path.ts) and leaves the rest to the hosted registry:
 *
 *   client ─► registry server ─► route(req) ─┬─ upstream ns ─► authorize (pull) ─► MirrorRouter
 *                                             │                 drop Authorization      (door 'registry':
 *                                             │                                          reads cached,
 *                                             │                                          writes 405)
 *                                             ├─ refused ────► NAME_UNKNOWN / NAME_INVALID
 *                                             ├─ /setup/… ───► extra routes (GET/HEAD)
 *                                             └─ undefined ──► hosted registry
 *
 * It also gives the hosted registry its `mountSource`: a cross-repository mount whose `from` is an
 * upstream namespace (`?mount=<digest>&from=docker.io/library/alpine`) copies the blob from the
 * pull-through cache, so retagging an upstream image into a hosted name moves no bytes from the
 * upstream. Only blobs already cached are offered: a mount never fetches (the client then uploads,
 * reading the source through this door, which caches it).
 *
 * The MirrorRouter is injected: the composition root builds it over the upstream client this door
 * should use (AuthenticatingUpstream: crossdock does the token dance, its clients cannot).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import { OciError, writeOciError } from '../errors.js'
import type { Logger } from '../log.js'
import type { CacheStore } from '../cache/cache-store.js'
import type { MirrorContext } from './mirror-router.js'
import type { AccessPolicy } from './access-policy.js'
import { parseDoorRequest, resolveNamespace, UpstreamNames, type DoorRoute } from './registry-door-path.js'
import { loggablePath } from '../observability/request-log.js'

export type DoorHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>

/** Same shape as the hosted registry's Authorizer (structural: mirror does not import registry). */
export type DoorAuthorizer = (req: IncomingMessage, access: { action: 'pull' | 'push', name: string }) => Promise<void>

/** A cached blob offered to a hosted mount; `open` gives a stream the caller owns. */
export interface MountableBlob {
  size: number
  open: () => Promise<Readable | undefined>
}

export interface RegistryDoorOptions {
  /** config.registries: the upstreams a namespace may name. */
  registries: readonly string[]
  /** config.hostedHostnames: `?ns=` naming one of these is a hosted pull. */
  hostedHostnames?: readonly string[]
  /** The pull-through router over this door's upstream client. */
  mirror: { handle: (req: IncomingMessage, res: ServerResponse, ctx: MirrorContext) => Promise<void> }
  cache: Pick<CacheStore, 'statBlob' | 'openBlob'>
  /**
   * Private images stay private through mounts too: a cached blob is offered only when this
   * door's clients may be served it from `from` (the same check a pull through the door makes).
   * Absent: every cached blob may be mounted.
   */
  access?: Pick<AccessPolicy, 'canServe'>
  /** Client access control (HTPASSWD_FILE); absent: everyone may pull. */
  authorize?: DoorAuthorizer
  /** Plain GET/HEAD paths answered on the registry port too (`/setup/containerd`). */
  extraRoutes?: Record<string, (req: IncomingMessage, res: ServerResponse) => void | Promise<void>>
  log: Logger
}

export interface RegistryDoor {
  /** For createRegistryServer({ route }): a handler for requests this door claims, else undefined. */
  route: (req: IncomingMessage) => DoorHandler | undefined
  /** For createHostedRegistry({ mountSource }): the cached blob behind an upstream `from`, if any. */
  mountSource: (from: string, digest: string) => Promise<MountableBlob | undefined>
  /** The routing decision alone (tests, logs). */
  parse: (req: IncomingMessage) => DoorRoute
}

const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

export function createRegistryDoor (opts: RegistryDoorOptions): RegistryDoor {
  const log = opts.log.child({ module: 'registry-door' })
  const upstreams = new UpstreamNames(opts.registries)
  const hosted = new Set((opts.hostedHostnames ?? []).map(h => h.toLowerCase()))

  const parse = (req: IncomingMessage): DoorRoute => parseDoorRequest(req.url ?? '/', {
    upstreams,
    isSelf: ns => {
      const n = ns.toLowerCase()
      const self = String(req.headers.host ?? '').toLowerCase()
      return n === self || hosted.has(n) || hosted.has(n.replace(/:\d+$/, ''))
    },
  })

  const route = (req: IncomingMessage): DoorHandler | undefined => {
    const extra = opts.extraRoutes?.[pathnameOf(req.url)]
    if (extra !== undefined && (req.method === 'GET' || req.method === 'HEAD')) return async (req, res) => { await extra(req, res) }
    const decision = parse(req)
    if (decision.kind === 'hosted') return undefined
    if (decision.kind === 'refuse') {
      return async (req, res) => {
        req.resume()
        writeOciError(res, decision.error, req.method)
      }
    }
    return async (req, res) => {
      const method = req.method ?? 'GET'
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
      log.debug({ method, path: loggablePath(req.url), host: decision.host, repository: decision.repository, upstreamPath: loggablePath(decision.path), via: decision.via }, 'registry door: upstream namespace')
      await opts.mirror.handle(req, res, { host: decision.host, door: 'registry', path: decision.path, allowPush: false })
    }
  }

  const mountSource = async (from: string, digest: string): Promise<MountableBlob | undefined> => {
    const ns = resolveNamespace(from, upstreams)
    if (ns === undefined) return undefined
    // The cache is keyed by digest alone (one copy across upstreams), as pulls through this door are.
    const cached = opts.cache.statBlob(digest)
    if (cached === undefined) return undefined
    // No client Authorization: on this door it is for crossdock, never for the upstream.
    const decision = await opts.access?.canServe({ host: ns.host, repository: ns.repository, kind: 'blob', reference: digest })
    if (decision !== undefined && !decision.allowed) {
      log.info({ host: ns.host, repository: ns.repository, digest, reason: decision.reason }, 'registry door: mount from the cache refused by the access policy')
      return undefined
    }
    return {
      size: cached.size,
      // Opened only when the hosted registry really copies (it may already hold the content).
      // Undefined if the entry was evicted meanwhile: the mount then falls back to an upload.
      open: async () => {
        const opened = await opts.cache.openBlob(digest)
        return opened?.fh.createReadStream({ highWaterMark: 1 << 20 })
      },
    }
  }

  return { route, mountSource, parse }
}

function pathnameOf (url: string | undefined): string {
  const raw = url ?? '/'
  const q = raw.indexOf('?')
  return q === -1 ? raw : raw.slice(0, q)
}
