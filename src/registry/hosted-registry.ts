/**
 * The hosted OCI registry as the composition root sees it: one `handle` that answers any `/v2/…`
 * request completely (both doors call it), and `close`. It runs the periodic purge of upload
 * sessions older than UPLOAD_MAX_AGE on the storage it is given (opened once, by the composition root).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from '../log.js'
import type { Authorizer, MountSource } from './context.js'
import { dispatch } from './routes.js'
import type { RegistryBackend } from './storage/stores.js'

export type { Authorizer, Access, Action, MountSource } from './context.js'

export interface HostedRequestContext {
  door: 'proxy' | 'registry'
  /** A path prefix in front of `/v2/` that the door mounted us under; Location headers keep it. */
  basePath?: string
}

export interface HostedRegistry {
  handle: (req: IncomingMessage, res: ServerResponse, ctx: HostedRequestContext) => Promise<void>
  close: () => Promise<void>
}

export interface HostedRegistryOptions {
  storage: RegistryBackend
  /** UPLOAD_MAX_AGE: sessions untouched this long are purged. */
  uploadMaxAgeMs: number
  log: Logger
  /** Client access control; absent means every request is allowed. */
  authorize?: Authorizer
  /** Where a mount from a pull-through namespace finds its blob (the cache); absent: hosted only. */
  mountSource?: MountSource
}

/** Purge stale sessions at most this often (and at least every UPLOAD_MAX_AGE / 4). */
const PURGE_INTERVAL_MS = 10 * 60 * 1000

export async function createHostedRegistry (opts: HostedRegistryOptions): Promise<HostedRegistry> {
  const log = opts.log.child({ module: 'registry' })
  const { storage } = opts
  const maxAge = opts.uploadMaxAgeMs

  const purge = async (): Promise<void> => {
    try {
      const purged = await storage.purge(Date.now() - maxAge)
      if (purged.uploads > 0 || purged.tmpFiles > 0) log.info(purged, 'purged stale upload sessions')
    } catch (err) {
      log.warn({ err }, 'purging stale upload sessions failed')
    }
  }
  await purge()
  const timer = setInterval(() => { void purge() }, Math.max(1000, Math.min(PURGE_INTERVAL_MS, maxAge / 4)))
  timer.unref()

  return {
    handle: async (req, res, ctx) => {
      await dispatch(req, res, { storage, log, authorize: opts.authorize, basePath: ctx.basePath, mountSource: opts.mountSource })
    },
    close: async () => {
      clearInterval(timer)
    },
  }
}
