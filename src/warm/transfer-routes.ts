/**
 * The registry door's crossdock-specific routes (POST /warm, /import/cache/…) and warm-up's own
 * access: the app wires these in; the pieces are warm-service.ts and bundle/cache-import.ts.
 *
 * Warm-up pulls as a client of our own registry door. With HTPASSWD_FILE that client needs a
 * credential: a random per-process secret (`Authorization: Bearer <32 random bytes>`), held in
 * memory only, accepted by the door's authorize wrapper, compared in constant time. The door drops
 * every Authorization before the pull-through (registry-door.ts), so it never reaches an upstream
 * or a log. Callers of POST /warm are authorised themselves first, like a pull of each image.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Agent } from 'undici'
import type { Config } from '../config/index.js'
import { ConfigError } from '../errors.js'
import type { Logger } from '../log.js'
import type { CacheStore } from '../cache/cache-store.js'
import { RegistryClient } from '../client/registry-client.js'
import { createCacheImport } from '../bundle/cache-import.js'
import type { Authorizer } from '../oci/authorizer.js'
import { parseDigest } from '../oci/digest.js'
import { Warmer } from './warmer.js'
import { createWarmService, parseWarmImages } from './warm-service.js'

export interface TransferRoutesOptions {
  config: Config
  log: Logger
  cache: CacheStore
  /** The registry door's listening address (known once it listens). */
  registryAddress: () => AddressInfo | null
  /** Client access control (HTPASSWD_FILE), absent when off. */
  authorize?: Authorizer
  /** The pull-through access policy's `trust` (imported repositories need no upstream check). */
  trust?: (host: string, repository: string) => Promise<void>
}

export function createTransferRoutes (opts: TransferRoutesOptions) {
  const { config, log, cache } = opts
  let images
  try {
    images = parseWarmImages(config.warm.images, config.registries)
  } catch (err) {
    throw new ConfigError(`WARM_IMAGES=${JSON.stringify(config.warm.images.join(' '))}: ${(err as Error).message}`)
  }
  const secret = Buffer.from(`Bearer ${randomBytes(32).toString('base64url')}`)
  const isSelf = (req: IncomingMessage): boolean => {
    const given = Buffer.from(String(req.headers.authorization ?? ''))
    return given.length === secret.length && timingSafeEqual(given, secret)
  }
  // Our own socket: on a wildcard LISTEN_HOST, its loopback address. With REGISTRY_TLS_CERT the
  // certificate names the public host, not 127.0.0.1, so it is not checked on this one hop.
  const scheme = config.registryTlsCert === undefined ? 'http' : 'https'
  const baseUrl = (): string => {
    const a = opts.registryAddress()
    if (a === null) return `${scheme}://127.0.0.1:${config.registryPort}`
    const host = a.address === '0.0.0.0' ? '127.0.0.1' : a.address === '::' ? '::1' : a.address
    return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${a.port}`
  }
  const dispatcher = new Agent({ bodyTimeout: 0, headersTimeout: 0, connect: { rejectUnauthorized: false } })
  let client: RegistryClient | undefined
  const warmer = new Warmer({
    // Made on first use: the port is known only once the door listens (REGISTRY_PORT=0).
    client: () => (client ??= new RegistryClient({ baseUrl: baseUrl(), authorization: opts.authorize === undefined ? undefined : secret.toString(), dispatcher })),
    isCached: digest => cache.blobs.stat(parseDigest(digest)) !== undefined,
    log,
  })
  const warm = createWarmService({ warmer, registries: config.registries, images, intervalMs: config.warm.intervalMs, authorize: opts.authorize, log })
  const cacheImport = createCacheImport({ cache, registries: config.registries, authorize: opts.authorize, trust: opts.trust, log })

  return {
    route: (req: IncomingMessage) => warm.route(req) ?? cacheImport.route(req),
    /** The door's authorize, accepting warm-up's own credential too. */
    wrap: (authorize: Authorizer | undefined): Authorizer | undefined => authorize === undefined
      ? undefined
      : async (req, access) => { if (!isSelf(req)) await authorize(req, access) },
    start: () => { warm.start() },
    stop: async () => {
      warm.stop()
      // Cut a warm-up download in flight rather than wait for it (the fill itself is the cache's).
      await dispatcher.destroy()
    },
    settled: warm.settled,
  }
}
