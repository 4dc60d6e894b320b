/**
 * The FillLock of a cluster (REDIS_URL): one leader per key across every replica, elected in Redis.
 *
 *   elect(key) ── Redis ready? ── no ─► a local leader at once (LocalFillLock), fallback{down}
 *        │ yes
 *        └─ EVAL ELECT ─► lock held?  yes ─► follower of its token
 *                                     no  ─► n = INCR fence; SET lock "<n>-<replica>" NX PX ttl ─► leader
 *   every ttl/3: EVAL RENEW (compare-and-pexpire) per lease held; 0, an error or a timeout ─► held() false
 *   release:     EVAL RELEASE (compare-and-delete): never deletes a successor's lock
 *
 * Fencing: the token starts with a counter that only grows while Redis lives, and a Redis that
 * restarted empty seeds it from its own clock in microseconds (TIME), so tokens stay unique — and
 * in practice increasing — across a Redis restart; the replica id after it says who leads.
 *
 * Losing Redis costs only speed (fill-lock.ts): every command is bounded (`commandTimeoutMs`),
 * ioredis' offline queue is off and nothing is retried, so a pull never waits on a Redis that is
 * gone — the election is local, like LocalFillLock. ioredis reconnects on its own (backoff up to
 * `reconnectMaxMs`) and the next election is coordinated again: no restart.
 *
 * A lease is also lost by the clock alone: `held()` turns false once `ttl` has passed since the last
 * renewal was *sent*, even when this event loop was too stalled to learn that another replica took
 * over. (The bucket cache fences by key instead — a leader writes only under its own token, see
 * bucket-fill-writer.ts — so a leader that lost its lease to a Redis outage still feeds its followers.)
 *
 * The three scripts keep every step on one key atomic (two keys for ELECT: the lock and the fence
 * counter; on a Redis Cluster both would need one hash slot — a single Redis or a primary/replica
 * pair is what this is written for).
 */
import { Redis } from 'ioredis'
import type { Logger } from '../log.js'
import { LocalFillLock, type FillElection, type FillLease, type FillLock } from './fill-lock.js'

/** What the metrics count (observability/cluster-metrics.ts); every call is cheap and synchronous. */
export interface FillLockObserver {
  election: (role: 'leader' | 'follower') => void
  /** An election made locally: Redis not connected (`down`), or a command failed or timed out (`error`). */
  fallback: (reason: 'down' | 'error') => void
  /** A lease found lost at renewal (taken over, expired, or Redis gone). */
  leaseLost: () => void
  redisUp: (up: boolean) => void
}

export interface RedisFillLockOptions {
  /** REDIS_URL: redis:// or rediss://, maybe with a password (never logged). */
  url: string
  /** createReplicaId(): a key segment, the tail of every token. */
  replicaId: string
  /** CLUSTER_LOCK_TTL; default 30 s. Renewed every third of it. */
  ttlMs?: number
  /** Bound on connecting and on each command; default 1 s. */
  commandTimeoutMs?: number
  /** Longest pause between reconnection attempts; default 2 s. */
  reconnectMaxMs?: number
  /** Prefix of every Redis key; default `crossdock:`. */
  keyPrefix?: string
  log?: Logger
  observer?: FillLockObserver
  /** Clock for lease validity (tests freeze it); default Date.now. */
  now?: () => number
  /** Renew on a timer (default); tests turn it off and call `renewAll` as a step. */
  autoRenew?: boolean
}

// KEYS[1] lock, KEYS[2] fence; ARGV[1] replica id, ARGV[2] ttl ms. Returns {1, token} or {0, holder}.
// The fence is seeded from TIME (µs) as a string: Lua numbers print as 1.7e+15 when concatenated.
// replicate_commands: Redis < 5 refuses writes after TIME in a script otherwise (a no-op since 5).
const ELECT = `
redis.replicate_commands()
local holder = redis.call('GET', KEYS[1])
if holder then return {0, holder} end
if redis.call('EXISTS', KEYS[2]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[2], t[1] .. string.format('%06d', tonumber(t[2])), 'NX')
end
local token = string.format('%d', redis.call('INCR', KEYS[2])) .. '-' .. ARGV[1]
redis.call('SET', KEYS[1], token, 'NX', 'PX', ARGV[2])
return {1, token}`

// KEYS[1] lock; ARGV[1] token, ARGV[2] ttl ms. 1 when still ours (expiry pushed back), else 0.
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`

// KEYS[1] lock; ARGV[1] token. Deletes only our own lock.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

interface HeldLease {
  key: string
  token: string
  held: boolean
  /** Local clock: the lease is not trusted past this, whatever Redis says later. */
  validUntil: number
}

export class RedisFillLock implements FillLock {
  readonly replicaId: string
  private readonly client: Redis
  private readonly local = new LocalFillLock()
  private readonly leases = new Set<HeldLease>()
  private readonly ttlMs: number
  private readonly prefix: string
  private readonly now: () => number
  private readonly timer: NodeJS.Timeout | undefined
  private up = false
  private closed = false

  constructor (private readonly opts: RedisFillLockOptions) {
    this.replicaId = opts.replicaId
    this.ttlMs = opts.ttlMs ?? 30_000
    this.prefix = opts.keyPrefix ?? 'crossdock:'
    this.now = opts.now ?? Date.now
    const timeout = opts.commandTimeoutMs ?? 1_000
    const log = opts.log
    this.client = new Redis(opts.url, {
      connectTimeout: timeout,
      commandTimeout: timeout,
      // Nothing waits for Redis: a command while disconnected fails at once, one in flight when
      // the connection drops fails then (not retried after the reconnect).
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: times => Math.min(50 * 2 ** Math.min(times, 10), opts.reconnectMaxMs ?? 2_000),
    })
    opts.observer?.redisUp(false)
    this.client.on('ready', () => {
      this.up = true
      opts.observer?.redisUp(true)
      log?.info({ redis: this.where() }, 'redis reachable: fills are coordinated across replicas')
    })
    this.client.on('close', () => {
      if (!this.up) return
      this.up = false
      opts.observer?.redisUp(false)
      if (!this.closed) log?.warn({ redis: this.where() }, 'redis unreachable: each replica fetches on its own until it returns')
    })
    // ioredis reports every failed reconnection; its messages name the address, never the password.
    this.client.on('error', (err: Error) => { log?.debug({ redis: this.where(), err: err.message }, 'redis connection error') })
    if (opts.autoRenew !== false) {
      this.timer = setInterval(() => { void this.renewAll() }, Math.max(1, Math.floor(this.ttlMs / 3)))
      this.timer.unref()
    }
  }

  coordinated (): boolean {
    return this.up && this.client.status === 'ready'
  }

  async elect (key: string): Promise<FillElection> {
    if (this.closed || !this.coordinated()) {
      this.opts.observer?.fallback('down')
      return await this.local.elect()
    }
    const sent = this.now()
    let reply: [number, string]
    try {
      reply = await this.client.eval(ELECT, 2, this.lockKey(key), `${this.prefix}fence`, this.replicaId, this.ttlMs) as [number, string]
    } catch {
      // A timeout may have set the lock all the same: the followers of that token see it expire.
      this.opts.observer?.fallback('error')
      return await this.local.elect()
    }
    const [won, token] = reply
    if (won !== 1) {
      this.opts.observer?.election('follower')
      return { role: 'follower', token }
    }
    this.opts.observer?.election('leader')
    const lease: HeldLease = { key, token, held: true, validUntil: sent + this.ttlMs }
    this.leases.add(lease)
    return {
      role: 'leader',
      lease: {
        token,
        held: () => lease.held && this.now() < lease.validUntil,
        release: async () => { await this.release(lease) },
      } satisfies FillLease,
    }
  }

  async holder (key: string): Promise<string | null | undefined> {
    if (this.closed || !this.coordinated()) return undefined
    try {
      return await this.client.get(this.lockKey(key))
    } catch {
      return undefined
    }
  }

  /** Pushes back the expiry of every lease still held; a lease not ours any more is lost. Never throws. */
  async renewAll (): Promise<void> {
    await Promise.all([...this.leases].map(async lease => {
      const sent = this.now()
      let ours = false
      try {
        ours = await this.client.eval(RENEW, 1, this.lockKey(lease.key), lease.token, this.ttlMs) === 1
      } catch {}
      if (!lease.held) return
      if (ours) {
        lease.validUntil = sent + this.ttlMs
        return
      }
      lease.held = false
      this.leases.delete(lease)
      this.opts.observer?.leaseLost()
    }))
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearInterval(this.timer)
    await Promise.all([...this.leases].map(async l => { await this.release(l) }))
    this.client.disconnect()
  }

  private async release (lease: HeldLease): Promise<void> {
    const wasOurs = lease.held
    lease.held = false
    this.leases.delete(lease)
    if (!wasOurs || this.client.status !== 'ready') return
    await this.client.eval(RELEASE, 1, this.lockKey(lease.key), lease.token).catch(() => {})
  }

  private lockKey (key: string): string {
    return `${this.prefix}fill:${key}`
  }

  /** host:port for logs: the URL without its password. */
  private where (): string {
    try {
      const u = new URL(this.opts.url)
      return `${u.protocol}//${u.host}`
    } catch {
      return 'redis'
    }
  }
}
