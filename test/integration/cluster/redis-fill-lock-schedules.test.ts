// RedisFillLock, property-based: fast-check generates schedules of elect / renew / expire / release /
// holder / Redis down / Redis up over two replicas and two keys, run step by step against a real
// redis-server and against a model of what each step must do. No step waits on time: renewals are
// explicit (autoRenew off), the lease clock is frozen, the TTL is a minute, and "expire" deletes the
// lock in Redis as an expiry would. Redis down is the real process stopped by its PID; up is a new
// one (empty, as a restart without persistence leaves it).
// Invariants after every step:
//   - at most one leader per key while Redis is up: followers name the model's holder's token;
//   - coordinated tokens strictly increase, across Redis restarts too;
//   - with Redis down every election is a local leader, decided without waiting;
//   - held() of every lease is the model's (lost only at renewal, or by release);
//   - a release never frees a lock another lease holds.
// Address 127.0.0.44, port 6380 (redis-fill-lock.test.ts has 6379).
import t from 'tap'
import fc from 'fast-check'
import { Redis as RedisClient } from 'ioredis'
import { requirePrivateNetns, createScope, waitFor } from '../../helpers/e2e/index.js'
import { startRedis, type Redis } from '../../helpers/redis.js'
import { RedisFillLock } from '../../../src/cluster/redis-fill-lock.js'
import type { FillLease } from '../../../src/cluster/fill-lock.js'

const ADDRESS = '127.0.0.44'
const PORT = 6380
const SEED = Number(process.env.FUZZ_SEED ?? 1717)
const RUNS = Number(process.env.LOCK_RUNS ?? 50)
const KEYS = ['sha256:k0', 'sha256:k1']
const REPLICAS = ['replica-a', 'replica-b']

type Step =
  | { op: 'elect', replica: number, key: number }
  | { op: 'renew', replica: number }
  | { op: 'expire', key: number }
  | { op: 'release', replica: number, pick: number }
  | { op: 'holder', replica: number, key: number }
  | { op: 'down' }
  | { op: 'up' }

const replica = fc.integer({ min: 0, max: 1 })
const key = fc.integer({ min: 0, max: 1 })
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ op: fc.constant('elect' as const), replica, key }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('renew' as const), replica }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('expire' as const), key }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant('release' as const), replica, pick: fc.nat(7) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('holder' as const), replica, key }) },
  { weight: 1, arbitrary: fc.constant({ op: 'down' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'up' as const }) },
)

interface ModelLease { replica: number, key: number, token: string, coordinated: boolean, held: boolean, lease: FillLease }

function fence (token: string): bigint {
  return BigInt(/^(\d+)-/.exec(token)?.[1] ?? '-1')
}

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'redis-sched')
  let redis: Redis = await startRedis(ADDRESS, scope.dir, PORT)
  let up = true
  scope.defer('stop redis', async () => { await redis.stop() })
  const url = redis.url
  let run = 0
  let steps = 0
  let restarts = 0

  t.test('schedules of elect/renew/expire/release/holder/down/up agree with the model', async t => {
    const property = fc.asyncProperty(fc.array(step, { minLength: 8, maxLength: 30, size: 'max' }), async schedule => {
      if (!up) { redis = await startRedis(ADDRESS, scope.dir, PORT); up = true }
      const prefix = `run${++run}:`
      const locks = REPLICAS.map(name => new RedisFillLock({ url, replicaId: name, keyPrefix: prefix, ttlMs: 60_000, autoRenew: false, now: () => 0, commandTimeoutMs: 1_000, reconnectMaxMs: 20 }))
      const admin = new RedisClient(url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 20 })
      admin.on('error', () => {})
      const adminReady = async (): Promise<void> => { await waitFor('admin connection', () => admin.status === 'ready', { timeoutMs: 10_000, intervalMs: 5 }) }
      const allCoordinated = async (want: boolean): Promise<void> => {
        await waitFor(`replicas coordinated=${want}`, () => locks.every(l => l.coordinated() === want), { timeoutMs: 10_000, intervalMs: 5 })
      }
      try {
        await allCoordinated(true)
        await adminReady()
        const holder = new Map<number, string>()
        const leases: ModelLease[] = []
        let lastFence = -1n
        for (const s of schedule) {
          steps++
          switch (s.op) {
            case 'elect': {
              const e = await locks[s.replica].elect(KEYS[s.key])
              if (!up) {
                if (e.role !== 'leader' || !e.lease.token.startsWith('local-')) throw new Error(`Redis down: expected a local leader, got ${JSON.stringify(e)}`)
                leases.push({ replica: s.replica, key: s.key, token: e.lease.token, coordinated: false, held: true, lease: e.lease })
                break
              }
              const current = holder.get(s.key)
              if (current !== undefined) {
                if (e.role !== 'follower' || e.token !== current) throw new Error(`expected a follower of ${current}, got ${JSON.stringify(e)}`)
                break
              }
              if (e.role !== 'leader') throw new Error(`nobody holds ${KEYS[s.key]} in the model, yet a follower of ${e.token}`)
              const f = fence(e.lease.token)
              if (f <= lastFence) throw new Error(`token ${e.lease.token} not above the last fence ${lastFence}`)
              if (!e.lease.token.endsWith(`-${REPLICAS[s.replica]}`)) throw new Error(`token ${e.lease.token} does not name ${REPLICAS[s.replica]}`)
              lastFence = f
              holder.set(s.key, e.lease.token)
              leases.push({ replica: s.replica, key: s.key, token: e.lease.token, coordinated: true, held: true, lease: e.lease })
              break
            }
            case 'renew':
              await locks[s.replica].renewAll()
              for (const l of leases) {
                if (l.replica === s.replica && l.coordinated && l.held && !(up && holder.get(l.key) === l.token)) l.held = false
              }
              break
            case 'expire':
              if (up) { await admin.del(`${prefix}fill:${KEYS[s.key]}`); holder.delete(s.key) }
              break
            case 'release': {
              // Mostly leases still held (what a filler releases); sometimes one released or lost before.
              const all = leases.filter(l => l.replica === s.replica)
              const held = all.filter(l => l.held)
              const mine = held.length > 0 && s.pick < 6 ? held : all
              if (mine.length === 0) break
              const l = mine[s.pick % mine.length]
              await l.lease.release()
              if (up && l.coordinated && l.held && holder.get(l.key) === l.token) holder.delete(l.key)
              l.held = false
              break
            }
            case 'holder': {
              const h = await locks[s.replica].holder(KEYS[s.key])
              const want = up ? (holder.get(s.key) ?? null) : undefined
              if (h !== want) throw new Error(`holder(${KEYS[s.key]}) is ${String(h)}, model says ${String(want)}`)
              break
            }
            case 'down':
              if (!up) break
              await redis.stop()
              up = false
              restarts++
              holder.clear()
              await allCoordinated(false)
              break
            case 'up':
              if (up) break
              redis = await startRedis(ADDRESS, scope.dir, PORT)
              up = true
              await allCoordinated(true)
              await adminReady()
              break
          }
          for (const l of leases) {
            if (l.lease.held() !== l.held) throw new Error(`after ${JSON.stringify(s)}: lease ${l.token} held()=${String(l.lease.held())}, model ${String(l.held)}`)
          }
        }
      } finally {
        await Promise.all(locks.map(async l => { await l.close() }))
        admin.disconnect()
      }
    })
    // The schedules that matter most, always run first: a stalled leader releasing after a takeover,
    // and a lease held across a Redis restart.
    const examples: Step[][] = [
      [{ op: 'elect', replica: 0, key: 0 }, { op: 'expire', key: 0 }, { op: 'elect', replica: 1, key: 0 }, { op: 'release', replica: 0, pick: 0 }, { op: 'holder', replica: 0, key: 0 }, { op: 'renew', replica: 1 }],
      [{ op: 'elect', replica: 0, key: 0 }, { op: 'down' }, { op: 'elect', replica: 1, key: 0 }, { op: 'up' }, { op: 'renew', replica: 0 }, { op: 'elect', replica: 1, key: 0 }, { op: 'elect', replica: 0, key: 0 }],
    ]
    const r = await fc.check(property, { seed: SEED, numRuns: RUNS, examples: examples.map(e => [e] as [Step[]]) })
    if (r.failed) t.fail(fc.defaultReportMessage(r) ?? 'failed')
    else t.pass(`${r.numRuns} schedules, ${steps} steps, ${restarts} Redis restarts (seed ${SEED})`)
  })
}
