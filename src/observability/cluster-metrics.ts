/**
 * The crossdock_cluster_* families: how fills are elected across replicas (cluster/redis-fill-lock.ts
 * reports through the observer below; cluster/ and observability/ do not import each other, the
 * app passes this observer in). A replica without REDIS_URL never reports: its counters stay 0 and
 * crossdock_cluster_redis_up 0 — not coordinated.
 */
import { Counter, Gauge, type Registry } from 'prom-client'

export interface ClusterObserver {
  election: (role: 'leader' | 'follower') => void
  fallback: (reason: 'down' | 'error') => void
  leaseLost: () => void
  redisUp: (up: boolean) => void
}

export function registerClusterMetrics (registry: Registry): ClusterObserver {
  const elections = new Counter({
    name: 'crossdock_cluster_elections_total',
    help: 'Fill elections decided in Redis (REDIS_URL), by role this replica got: leader (it fetches upstream) or follower (it reads the leader\'s parts).',
    labelNames: ['role'] as const,
    registers: [registry],
  })
  const fallbacks = new Counter({
    name: 'crossdock_cluster_local_fallbacks_total',
    help: 'Fill elections made locally because Redis could not decide them, by reason: down (not connected) or error (a command failed or timed out). Each may cost one duplicate upstream fetch.',
    labelNames: ['reason'] as const,
    registers: [registry],
  })
  const lost = new Counter({
    name: 'crossdock_cluster_leases_lost_total',
    help: 'Fill leases found lost at renewal (another replica took over, the lock expired, or Redis went away mid-fill).',
    registers: [registry],
  })
  const up = new Gauge({
    name: 'crossdock_cluster_redis_up',
    help: '1 when Redis answers and fills are coordinated across replicas; 0 when it does not, or REDIS_URL is unset.',
    registers: [registry],
  })
  for (const role of ['leader', 'follower']) elections.inc({ role }, 0)
  for (const reason of ['down', 'error']) fallbacks.inc({ reason }, 0)
  return {
    election: role => { elections.inc({ role }) },
    fallback: reason => { fallbacks.inc({ reason }) },
    leaseLost: () => { lost.inc() },
    redisUp: u => { up.set(u ? 1 : 0) },
  }
}
