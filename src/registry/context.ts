/**
 * What a hosted-registry handler receives: the request, its validated path parameters, the storage,
 * and the hooks of the door that called us. Handlers throw OciError; the router writes it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { Logger } from '../log.js'
import type { RegistryStorage } from './storage/stores.js'

import type { Access } from '../oci/authorizer.js'
import type { Digest } from '../oci/digest.js'

export type { Access, Action, Authorizer } from '../oci/authorizer.js'

/**
 * Content the hosted registry may copy in for a cross-repository mount whose `from` is not one of
 * its own repositories but a pull-through namespace (`docker.io/library/alpine`): the composition
 * root plugs the pull-through cache in here, so the registry does not depend on the cache.
 * Resolves undefined when `from` is no such namespace or the blob is not there; never fetches from
 * an upstream. `open` gives the bytes as a stream the caller owns (undefined if gone meanwhile);
 * the registry verifies the digest while copying, as for any upload.
 */
export type MountSource = (from: string, digest: Digest) => Promise<{ size: number, open: () => Promise<Readable | undefined> } | undefined>

export interface RequestContext {
  req: IncomingMessage
  res: ServerResponse
  /** The repository name, validated ('' for `/v2/` and `/v2/_catalog`). */
  name: string
  /** Other path parameters (digest, reference, upload id), percent-decoded, not yet validated. */
  params: Record<string, string>
  query: URLSearchParams
  /** Prefix of every path we hand out (Location, Link): '' unless the door mounted us below one. */
  basePath: string
  storage: RegistryStorage
  log: Logger
  /** Checks another access than the route's own (a mount reads from the `from` repository). */
  authorize: (access: Access) => Promise<void>
  /** Blobs a mount may copy from outside hosted storage (absent: mounts are between hosted repositories only). */
  mountSource?: MountSource
}

export type Handler = (ctx: RequestContext) => Promise<void>
