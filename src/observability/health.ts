/**
 * Liveness and readiness, on both doors.
 *
 * - `/healthz`: the process answers. Nothing else is checked, so an orchestrator restarts crossdock
 *   only when it is really stuck, never because a disk filled up.
 * - `/readyz`: crossdock can do its work: the root CA is loaded and not expired, the cache and
 *   hosted-registry directories take a write (a real file is written and removed: permissions,
 *   read-only mounts and full disks all show up, which `access(W_OK)` would not catch), and the
 *   cache's file system has at least CACHE_MIN_FREE available (below it misses stream through
 *   uncached, so the instance works but no longer caches). 200, or 503 with the first reason.
 *   Coordination between replicas (REDIS_URL) is reported beside the checks, never one of them:
 *   without Redis a replica still serves everything, it only fetches what another replica is
 *   fetching too — taking it out of the load balancer would cost far more than that.
 */
import { randomBytes } from 'node:crypto'
import { rm, statfs, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface ReadinessOptions {
  /** The CA's expiry, or undefined when no CA is loaded. */
  caNotAfter: () => Date | undefined
  cacheDir: string
  /** Undefined when the hosted registry keeps no directory (STORAGE=s3). */
  registryDir?: string
  /** The hosted storage backend's own probe (the bucket answers): undefined, or why not. */
  storage?: () => Promise<string | undefined>
  /** CACHE_MIN_FREE, bytes. */
  minFree: number
  /** True once shutdown began: not ready, so load balancers stop sending new work. */
  stopping?: () => boolean
  /** How fills are elected across replicas right now, for people (never a reason to be unready). */
  coordination?: () => string
}

export interface Readiness {
  ready: boolean
  /** The first failed check, for people. */
  reason?: string
  checks: Record<'ca' | 'cacheDir' | 'registryDir' | 'storage' | 'freeDisk', string>
  freeBytes?: number
  coordination?: string
}

export interface Health {
  readiness: () => Promise<Readiness>
}

export function createHealth (opts: ReadinessOptions): Health {
  return {
    readiness: async () => {
      const checks: Readiness['checks'] = { ca: 'ok', cacheDir: 'ok', registryDir: 'ok', storage: 'ok', freeDisk: 'ok' }
      const notAfter = opts.caNotAfter()
      if (notAfter === undefined) checks.ca = 'root CA not loaded'
      else if (notAfter.getTime() <= Date.now()) checks.ca = `root CA expired on ${notAfter.toISOString()}`
      const [cacheDir, registryDir, storage, free] = await Promise.all([
        probeWrite(opts.cacheDir), opts.registryDir === undefined ? undefined : probeWrite(opts.registryDir), opts.storage?.(), freeBytes(opts.cacheDir),
      ])
      if (cacheDir !== undefined) checks.cacheDir = `cache directory ${opts.cacheDir} is not writable: ${cacheDir}`
      if (registryDir !== undefined) checks.registryDir = `registry directory ${opts.registryDir} is not writable: ${registryDir}`
      if (storage !== undefined) checks.storage = `hosted storage: ${storage}`
      if (typeof free === 'string') checks.freeDisk = `cannot read free space of ${opts.cacheDir}: ${free}`
      else if (free < opts.minFree) checks.freeDisk = `${free} bytes free under ${opts.cacheDir}, below CACHE_MIN_FREE (${opts.minFree})`
      const failed = Object.values(checks).find(c => c !== 'ok')
      const reason = opts.stopping?.() === true ? 'shutting down' : failed
      return { ready: reason === undefined, reason, checks, freeBytes: typeof free === 'number' ? free : undefined, coordination: opts.coordination?.() }
    },
  }
}

/** Writes and removes a small file in `dir`; the error message, or undefined when it worked. */
async function probeWrite (dir: string): Promise<string | undefined> {
  // A name of its own per probe: two concurrent probes must not remove each other's file. The
  // leading dot and prefix keep it out of the cache's and the registry's own layouts.
  const file = join(dir, `.crossdock-readyz-${process.pid}-${randomBytes(4).toString('hex')}`)
  try {
    await writeFile(file, 'ok\n')
    return undefined
  } catch (err) {
    return (err as Error).message
  } finally {
    await rm(file, { force: true }).catch(() => {})
  }
}

async function freeBytes (dir: string): Promise<number | string> {
  try {
    const s = await statfs(dir)
    return s.bavail * s.bsize
  } catch (err) {
    return (err as Error).message
  }
}
