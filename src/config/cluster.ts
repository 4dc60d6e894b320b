/**
 * How replicas coordinate (design §10): REDIS_URL names the Redis that elects one filler per blob
 * cluster-wide; unset, every replica fills on its own (the single-machine default). Parsed with the
 * rest of the configuration, so a bad URL is one line before anything listens — the URL may carry a
 * password, which loadConfig keeps out of that line (REDIS_URL is a secret variable).
 *
 * Only with STORAGE=s3: a fill lock elects who writes a blob into the shared bucket. Replicas on
 * their own directories (STORAGE=fs) share nothing a lock could guard, so REDIS_URL there is refused
 * rather than accepted and silently unused (and reported as coordinating by /readyz).
 */
import { fail, parseDuration } from './parse.js'
import type { StorageConfig } from './storage.js'

export interface ClusterConfig {
  /** REDIS_URL (redis:// or rediss://, maybe with user:password and /db); undefined: no coordination. */
  redisUrl?: string
  /** CLUSTER_LOCK_TTL: how long a fill lock outlives a leader that stopped renewing it. */
  lockTtlMs: number
}

// Renewal runs every third of the TTL and each Redis command may take up to a second: below 3 s a
// healthy leader could lose its lease to one slow answer.
const MIN_LOCK_TTL_MS = 3_000

export function parseCluster (raw: (name: string) => string, storage: StorageConfig['kind']): ClusterConfig {
  const lockTtlMs = parseDuration('CLUSTER_LOCK_TTL', raw('CLUSTER_LOCK_TTL'))
  if (lockTtlMs < MIN_LOCK_TTL_MS) fail('CLUSTER_LOCK_TTL', raw('CLUSTER_LOCK_TTL'), 'a duration of at least 3s')
  const value = raw('REDIS_URL').trim()
  if (value === '') return { lockTtlMs }
  let url: URL
  try {
    url = new URL(value)
  } catch {
    fail('REDIS_URL', value, 'a URL such as redis://redis.internal:6379 or rediss://:password@redis.internal:6380/0')
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') fail('REDIS_URL', value, 'a URL with scheme redis: or rediss: (TLS)')
  if (url.hostname === '') fail('REDIS_URL', value, 'a URL with a host, such as redis://redis.internal:6379')
  if (!/^(\/\d{0,2})?$/.test(url.pathname)) fail('REDIS_URL', value, 'a database number as the path (redis://host:6379/0), or no path')
  if (storage !== 's3') fail('REDIS_URL', value, 'no value with STORAGE=fs: replicas coordinate through Redis only when they share a bucket (STORAGE=s3); unset it or set STORAGE=s3')
  return { redisUrl: value, lockTtlMs }
}
