/**
 * What a request on the registry port means: the pure path parsing behind the registry door
 * (registry-door.ts wires it to the hosted registry and the mirror). Routing is by explicit namespace, never "try the
 * upstream, then hosted" (design §2), and it never looks at the method, so HEAD and GET of the
 * same path always go to the same place.
 *
 *   /v2/  /v2/_catalog                              ─► hosted (the ping never depends on upstreams)
 *   /v2/<name>/…?ns=<registry>                      ─► upstream <registry>, path unchanged
 *        (containerd mirror mode; ns = crossdock's own name or a HOSTED_HOSTNAME: ignored)
 *   /v2/proxy/<host>/<name>/…                       ─► upstream <host>, path /v2/<name>/…
 *   /v2/<host>/<name>/…    (<host> ∈ REGISTRIES)    ─► upstream <host>, path /v2/<name>/…
 *   /v2/<host>/<name>/…    (<host> looks like a host: has `.` or `:`, or is `localhost`,
 *                           and is not an upstream) ─► refused: NAME_UNKNOWN naming REGISTRIES
 *   /v2/<name>/…  otherwise                         ─► hosted
 *
 * Host aliases: `docker.io` and `index.docker.io` mean `registry-1.docker.io` (Docker Hub), and a
 * one-component Docker Hub name in the prefix form gets Docker's `library/` (as `docker pull
 * alpine` does). containerd has already normalised the name it sends with `?ns=`, so that path is
 * passed on exactly as it came.
 */
import { OciError } from '../errors.js'
import { isValidName, nameInvalid } from '../oci/names.js'

export const DOCKER_HUB = 'registry-1.docker.io'
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', DOCKER_HUB])

/** The seed project's spelling: `/v2/proxy/<upstream-host>/<name>/…`. */
export const PROXY_PREFIX = 'proxy'

// The endpoint after the name; the name itself may have any depth.
const ENDPOINT_RE = /^(?<name>.+?)\/(?<endpoint>blobs\/uploads(?:\/[^/]*)?|blobs\/[^/]+|manifests\/[^/]+|tags\/list|referrers\/[^/]+)$/

export type DoorRoute =
  | { kind: 'hosted' }
  | {
    kind: 'upstream'
    /** Upstream host as the upstream client wants it (`registry-1.docker.io`, `host:port`). */
    host: string
    /** The repository at the upstream (`library/alpine`). */
    repository: string
    /** The request path as the upstream should see it: `/v2/<repository>/<endpoint>[?query]`, without `ns`. */
    path: string
    /** How the request named its upstream. */
    via: 'ns' | 'prefix' | 'proxy-prefix'
  }
  | { kind: 'refuse', error: OciError }

/** The set of upstream registries the door may reach, with Docker Hub's aliases. */
export class UpstreamNames {
  private readonly hosts: Set<string>

  /** `registries`: config.registries (Docker Hub's hosts are always there). */
  constructor (registries: readonly string[]) {
    this.hosts = new Set(registries.map(h => h.toLowerCase()))
  }

  /** The upstream host a namespace component stands for, or undefined when it is none of ours. */
  resolve (component: string): string | undefined {
    const h = component.toLowerCase()
    if (DOCKER_HUB_ALIASES.has(h)) return DOCKER_HUB
    return this.hosts.has(h) ? h : undefined
  }

  list (): string[] {
    return [...this.hosts].filter(h => !DOCKER_HUB_ALIASES.has(h) && h !== 'auth.docker.io').sort()
  }
}

/** A first path component that can only be meant as a registry host (docker's own rule for refs). */
export function looksLikeHost (component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost'
}

export interface ParseOptions {
  upstreams: UpstreamNames
  /**
   * Names clients use for crossdock itself (its Host header, HOSTED_HOSTNAMES). containerd sends
   * `?ns=cache:5000` for `cache:5000/team/app`: that is a hosted pull, not an upstream's.
   */
  isSelf: (ns: string) => boolean
}

/** Routes one request by its raw URL (path and query, as `req.url` holds it). */
export function parseDoorRequest (rawUrl: string, opts: ParseOptions): DoorRoute {
  const q = rawUrl.indexOf('?')
  const pathname = q === -1 ? rawUrl : rawUrl.slice(0, q)
  const query = new URLSearchParams(q === -1 ? '' : rawUrl.slice(q + 1))
  if (!pathname.startsWith('/v2/') || pathname === '/v2/' || pathname === '/v2/_catalog') return { kind: 'hosted' }

  const ns = query.get('ns')
  query.delete('ns')
  const search = query.size > 0 ? `?${query.toString()}` : ''
  const rest = pathname.slice('/v2/'.length)

  if (ns !== null && ns !== '' && !opts.isSelf(ns)) {
    const host = opts.upstreams.resolve(ns)
    if (host === undefined) return refuseHost(ns, opts.upstreams, 'ns')
    return upstreamRoute(host, rest, search, 'ns', false)
  }

  const components = rest.split('/')
  if (components[0] === PROXY_PREFIX && components.length > 2 && looksLikeHost(components[1])) {
    const host = opts.upstreams.resolve(components[1])
    if (host === undefined) return refuseHost(components[1], opts.upstreams, 'proxy-prefix')
    return upstreamRoute(host, components.slice(2).join('/'), search, 'proxy-prefix', true)
  }
  if (components.length > 1 && looksLikeHost(components[0])) {
    const host = opts.upstreams.resolve(components[0])
    if (host === undefined) return refuseHost(components[0], opts.upstreams, 'prefix')
    return upstreamRoute(host, components.slice(1).join('/'), search, 'prefix', true)
  }
  return { kind: 'hosted' }
}

/**
 * The upstream namespace a repository name stands for, for a cross-repository mount's `from`
 * (`docker.io/library/alpine`, `proxy/ghcr.io/org/img`); undefined for a hosted name.
 */
export function resolveNamespace (name: string, upstreams: UpstreamNames): { host: string, repository: string } | undefined {
  const components = name.split('/')
  const skip = components[0] === PROXY_PREFIX && components.length > 2 ? 1 : 0
  if (components.length < skip + 2) return undefined
  const host = upstreams.resolve(components[skip])
  if (host === undefined) return undefined
  const repository = hubName(host, components.slice(skip + 1).join('/'))
  return isValidName(repository) ? { host, repository } : undefined
}

function upstreamRoute (host: string, rest: string, search: string, via: 'ns' | 'prefix' | 'proxy-prefix', prefixed: boolean): DoorRoute {
  const m = ENDPOINT_RE.exec(rest)
  if (m?.groups === undefined) {
    return { kind: 'refuse', error: new OciError('NAME_UNKNOWN', 'no such endpoint', { status: 404, detail: { path: `/v2/${rest}`.slice(0, 300) } }) }
  }
  const repository = prefixed ? hubName(host, m.groups.name) : m.groups.name
  if (!isValidName(repository)) return { kind: 'refuse', error: nameInvalid(repository) }
  return { kind: 'upstream', host, repository, path: `/v2/${repository}/${m.groups.endpoint}${search}`, via }
}

/** Docker Hub's official images live under `library/`; `docker.io/alpine` means `library/alpine`. */
function hubName (host: string, name: string): string {
  return host === DOCKER_HUB && !name.includes('/') ? `library/${name}` : name
}

function refuseHost (host: string, upstreams: UpstreamNames, via: 'ns' | 'prefix' | 'proxy-prefix'): DoorRoute {
  const shown = host.slice(0, 200)
  const how = via === 'ns' ? `?ns=${shown}` : `the path prefix ${shown}/`
  const message = `crossdock: ${shown} is not one of the upstream registries this proxy serves (${how}); ` +
    `add it to REGISTRIES to cache it, or use a repository name whose first component has no '.' or ':' for a hosted repository`
  return { kind: 'refuse', error: new OciError('NAME_UNKNOWN', message, { detail: { upstream: shown, registries: ['docker.io', ...upstreams.list()] } }) }
}
