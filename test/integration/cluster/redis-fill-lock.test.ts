// RedisFillLock against a real redis-server (Debian's): two lock instances are two replicas.
// One leader per key; expiry and takeover with a larger fencing token; a stalled leader learns it
// lost; release never deletes a successor's lock; Redis killed, frozen or never there → local
// leaders at once; Redis back → coordinated again without a restart. (The app's /readyz, status
// and metrics with Redis: app-on-bucket.test.ts, on a bucket as REDIS_URL requires.)
// Address 127.0.0.44, port 6379 (redis-fill-lock-schedules.test.ts uses 6380 there, app-on-bucket.test.ts 6381).
import t, { type Test } from 'tap'
import { createServer, type Socket } from 'node:net'
import { Writable } from 'node:stream'
import { Redis as RedisClient } from 'ioredis'
import { requirePrivateNetns, createScope, waitFor, freePort } from '../../helpers/e2e/index.js'
import { startRedis, type Redis } from '../../helpers/redis.js'
import { RedisFillLock, type FillLockObserver, type RedisFillLockOptions } from '../../../src/cluster/redis-fill-lock.js'
import type { FillElection, FillLease } from '../../../src/cluster/fill-lock.js'
import { createLogger } from '../../../src/log.js'

const ADDRESS = '127.0.0.44'
const PORT = 6379

// One redis-server for the file, and cases stop it: one case at a time.
t.jobs = 1

interface Counts { leader: number, follower: number, down: number, error: number, lost: number, up: boolean }

function counting (): { counts: Counts, observer: FillLockObserver } {
  const counts: Counts = { leader: 0, follower: 0, down: 0, error: 0, lost: 0, up: false }
  return {
    counts,
    observer: {
      election: role => { counts[role]++ },
      fallback: reason => { counts[reason]++ },
      leaseLost: () => { counts.lost++ },
      redisUp: up => { counts.up = up },
    },
  }
}

/** The counter part of a coordinated token `<n>-<replica>`. */
function fence (token: string): bigint {
  const m = /^(\d+)-/.exec(token)
  if (m === null) throw new Error(`not a coordinated token: ${token}`)
  return BigInt(m[1])
}

function leaseOf (e: FillElection): FillLease {
  if (e.role !== 'leader') throw new Error(`expected a leader, got a follower of ${e.token}`)
  return e.lease
}

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'redis-lock')
  let redis: Redis = await startRedis(ADDRESS, scope.dir, PORT)
  scope.defer('stop redis', async () => { await redis.stop() })
  const admin = new RedisClient(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 })
  admin.on('error', () => {})
  scope.defer('close admin', () => { admin.disconnect() })

  const unhandled: unknown[] = []
  const onUnhandled = (err: unknown): void => { unhandled.push(err) }
  process.on('unhandledRejection', onUnhandled)
  scope.defer('unhandled listener', () => { process.off('unhandledRejection', onUnhandled) })

  let cases = 0
  /** A replica's lock on a fresh key prefix, connected. */
  const replica = async (t: Test, name: string, opts: Partial<RedisFillLockOptions> = {}, prefix = `case${cases}:`): Promise<{ lock: RedisFillLock, counts: Counts }> => {
    const { counts, observer } = counting()
    const lock = new RedisFillLock({ url: redis.url, replicaId: name, keyPrefix: prefix, commandTimeoutMs: 500, reconnectMaxMs: 50, observer, ...opts })
    t.teardown(async () => { await lock.close() })
    await waitFor(`${name} to connect`, () => lock.coordinated(), { timeoutMs: 10_000, intervalMs: 10 })
    return { lock, counts }
  }
  t.beforeEach(() => { cases++ })

  t.test('one leader per key across two replicas; followers get its token', async t => {
    const a = await replica(t, 'replica-a')
    const b = await replica(t, 'replica-b')
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).lock.elect('sha256:aa')))
    const leaders = results.filter(r => r.role === 'leader')
    t.equal(leaders.length, 1, 'exactly one leader')
    const token = leaseOf(leaders[0]).token
    t.match(token, /^\d+-replica-[ab]$/, 'counter, then the replica id')
    t.ok(results.every(r => r.role === 'leader' || r.token === token), 'every follower names the leader\'s token')
    t.equal(await a.lock.holder('sha256:aa'), token)
    t.equal(await b.lock.holder('sha256:aa'), token)
    t.equal(await a.lock.holder('sha256:bb'), null, 'nobody holds another key')
    t.equal(a.counts.leader + b.counts.leader, 1)
    t.equal(a.counts.follower + b.counts.follower, 9)
    t.equal(a.counts.down + a.counts.error + b.counts.down + b.counts.error, 0, 'no local fallback')
    const other = leaseOf(await b.lock.elect('sha256:bb'))
    t.ok(fence(other.token) > fence(token), 'the next election gets a larger token')
    await leaseOf(leaders[0]).release()
    t.equal(await b.lock.holder('sha256:aa'), null, 'released')
    t.ok(leaseOf(await b.lock.elect('sha256:aa')).held(), 'and elected again')
  })

  t.test('expiry: another replica takes over with a larger token; the stalled leader learns it lost', async t => {
    // A never renews (a stalled event loop) and its clock is frozen, so only Redis can tell it.
    const a = await replica(t, 'replica-a', { ttlMs: 300, autoRenew: false, now: () => 0 })
    const b = await replica(t, 'replica-b', { ttlMs: 300, autoRenew: false })
    const stalled = leaseOf(await a.lock.elect('sha256:cc'))
    const follower = await b.lock.elect('sha256:cc')
    t.same(follower, { role: 'follower', token: stalled.token })
    await waitFor('the lock to expire in Redis', async () => await b.lock.holder('sha256:cc') === null ? true : undefined, { timeoutMs: 10_000, intervalMs: 20 })
    const successor = leaseOf(await b.lock.elect('sha256:cc'))
    t.ok(fence(successor.token) > fence(stalled.token), `takeover token ${successor.token} > ${stalled.token}`)
    t.ok(stalled.held(), 'before renewing, the frozen-clock leader cannot know')
    await a.lock.renewAll()
    t.notOk(stalled.held(), 'renewal found another token: lost')
    t.equal(a.counts.lost, 1)
    await stalled.release()
    t.equal(await a.lock.holder('sha256:cc'), successor.token, 'its release left the successor\'s lock alone')
    t.ok(successor.held())
    await successor.release()
    t.equal(await a.lock.holder('sha256:cc'), null)
    await successor.release()
    t.equal(await a.lock.holder('sha256:cc'), null, 'release is idempotent')
  })

  t.test('a leader that does not renew stops trusting its lease once the TTL passed', async t => {
    const a = await replica(t, 'replica-a', { ttlMs: 300, autoRenew: false })
    const lease = leaseOf(await a.lock.elect('sha256:dd'))
    t.ok(lease.held())
    await waitFor('held() to turn false by the clock', () => !lease.held(), { timeoutMs: 5_000, intervalMs: 10 })
    t.equal(a.counts.lost, 0, 'no renewal ran: the clock alone said so')
  })

  t.test('renewal keeps a lock alive well past its TTL; release ends it', async t => {
    const a = await replica(t, 'replica-a', { ttlMs: 300 })
    const b = await replica(t, 'replica-b', { ttlMs: 300 })
    const lease = leaseOf(await a.lock.elect('sha256:ee'))
    const started = Date.now()
    // Polls the whole time: the lock must never be free or another's while renewals run.
    await waitFor('four TTLs to pass', async () => {
      t.equal(await b.lock.holder('sha256:ee'), lease.token)
      return Date.now() - started > 1_200 ? true : undefined
    }, { timeoutMs: 10_000, intervalMs: 50 })
    t.ok(lease.held())
    t.same(await b.lock.elect('sha256:ee'), { role: 'follower', token: lease.token })
    await lease.release()
    t.ok(leaseOf(await b.lock.elect('sha256:ee')).held())
  })

  t.test('Redis killed: local leaders at once; Redis back: coordinated again, tokens still larger', async t => {
    const a = await replica(t, 'replica-a')
    const b = await replica(t, 'replica-b')
    const before = leaseOf(await a.lock.elect('sha256:ff'))
    await redis.stop()
    await waitFor('both replicas to see Redis gone', () => !a.lock.coordinated() && !b.lock.coordinated(), { timeoutMs: 10_000, intervalMs: 10 })
    t.notOk(a.counts.up, 'redis up gauge at 0')
    const started = Date.now()
    const [ea, eb] = await Promise.all([a.lock.elect('sha256:ff'), b.lock.elect('sha256:ff')])
    const ms = Date.now() - started
    t.ok(ms < 1_000, `both elections answered in ${ms} ms, without waiting on Redis`)
    t.match(leaseOf(ea).token, /^local-/, 'a leads locally')
    t.match(leaseOf(eb).token, /^local-/, 'b leads locally (a duplicate fetch: only speed is lost)')
    t.ok(leaseOf(ea).held() && leaseOf(eb).held())
    t.equal(await a.lock.holder('sha256:ff'), undefined, 'nobody can tell who holds it')
    await a.lock.renewAll()
    t.notOk(before.held(), 'a lease held in Redis is lost with it')
    t.equal(a.counts.down, 1)
    t.equal(b.counts.down, 1)

    redis = await startRedis(ADDRESS, scope.dir, PORT)
    await waitFor('both replicas to reconnect', () => a.lock.coordinated() && b.lock.coordinated(), { timeoutMs: 10_000, intervalMs: 10 })
    t.ok(a.counts.up, 'redis up gauge back at 1')
    const after = leaseOf(await b.lock.elect('sha256:ff'))
    t.ok(fence(after.token) > fence(before.token), `an empty Redis still gives a larger token (${after.token} > ${before.token})`)
    t.same(await a.lock.elect('sha256:ff'), { role: 'follower', token: after.token }, 'coordinated again, no restart')
    await leaseOf(ea).release()
    await leaseOf(eb).release()
  })

  t.test('a Redis that stops answering: elections fall back within the command timeout', async t => {
    const a = await replica(t, 'replica-a', { commandTimeoutMs: 300 })
    process.kill(redis.pid, 'SIGSTOP')
    let resumed = false
    const resume = (): void => { if (!resumed) { resumed = true; process.kill(redis.pid, 'SIGCONT') } }
    t.teardown(resume)
    const started = Date.now()
    const e = await a.lock.elect('sha256:11')
    const ms = Date.now() - started
    t.match(leaseOf(e).token, /^local-/, 'a local leader')
    t.ok(ms < 2_000, `answered in ${ms} ms (command timeout 300 ms)`)
    t.equal(a.counts.error, 1, 'counted as an error fallback')
    t.equal(await a.lock.holder('sha256:11'), undefined)
    resume()
    let n = 0
    await waitFor('coordinated elections again', async () => { await a.lock.elect(`sha256:12${n++}`); return a.counts.leader > 0 ? true : undefined }, { timeoutMs: 10_000, intervalMs: 20 })
  })

  t.test('Redis never reachable: local leaders at once, the password never logged, close does not hang', async t => {
    const lines: string[] = []
    const log = createLogger({ level: 'debug', format: 'json', destination: new Writable({ write (c, _e, cb) { lines.push(String(c)); cb() } }) })
    const port = await freePort(ADDRESS)
    const { counts, observer } = counting()
    const lock = new RedisFillLock({ url: `redis://:s3cret-pw@${ADDRESS}:${port}`, replicaId: 'lonely', log, observer, commandTimeoutMs: 300, reconnectMaxMs: 50 })
    await waitFor('a failed connection attempt to be logged', () => lines.some(l => l.includes('ECONNREFUSED')), { timeoutMs: 5_000, intervalMs: 10 })
    t.notOk(lock.coordinated())
    t.match(leaseOf(await lock.elect('sha256:22')).token, /^local-/)
    t.equal(await lock.holder('sha256:22'), undefined)
    t.equal(counts.down, 1)
    await lock.close()
    t.notOk(lines.some(l => l.includes('s3cret-pw')), 'no password in the logs')
    t.ok(lines.some(l => l.includes(`redis://${ADDRESS}:${port}`)), 'the address is')
  })

  t.test('a peer that accepts and never answers: local leaders at once', async t => {
    const sockets: Socket[] = []
    const silent = createServer(s => { sockets.push(s) })
    await new Promise<void>(resolve => silent.listen(0, ADDRESS, resolve))
    t.teardown(async () => { for (const s of sockets) s.destroy(); await new Promise(resolve => silent.close(resolve)) })
    const port = (silent.address() as { port: number }).port
    const { counts, observer } = counting()
    const lock = new RedisFillLock({ url: `redis://${ADDRESS}:${port}`, replicaId: 'hopeful', commandTimeoutMs: 300, reconnectMaxMs: 50, observer })
    await waitFor('the connection to be accepted', () => sockets.length > 0, { timeoutMs: 5_000, intervalMs: 10 })
    t.match(leaseOf(await lock.elect('sha256:33')).token, /^local-/)
    t.same([counts.down, counts.error], [1, 0], 'decided without sending a command: it never became ready')
    await lock.close()
  })

  t.test('no unhandled rejections in any of it', async t => {
    t.same(unhandled.map(String), [])
  })
}
