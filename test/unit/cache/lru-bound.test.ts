import t from 'tap'
import { join } from 'node:path'
import { LruBound, type BoundEntry } from '../../../src/cache/lru-bound.js'
import { tempDir } from './helpers.js'

function bound (maxSize: number, extra: { inactiveMs?: number, now?: () => number, recencyFile?: string } = {}): { b: LruBound<BoundEntry>, removed: Array<[string, string]> } {
  const removed: Array<[string, string]> = []
  const b = new LruBound<BoundEntry>({ maxSize, inactiveMs: extra.inactiveMs ?? 0, now: extra.now, recencyFile: extra.recencyFile, onRemove: (k, _v, reason) => removed.push([k, reason]) })
  t.teardown(async () => { await b.close() })
  return { b, removed }
}

t.test('least recently read goes first; sizes add up', async t => {
  const { b, removed } = bound(100)
  b.add('a', { size: 40, lastReadAt: 1 })
  b.add('b', { size: 40, lastReadAt: 2 })
  t.equal(b.usedBytes, 80)
  b.get('a') // a is now more recent than b
  b.add('c', { size: 40, lastReadAt: 3 })
  t.same(removed, [['b', 'evict']], 'b was the least recently read')
  t.equal(b.usedBytes, 80)
  t.same(b.keys(), ['a', 'c'])
  b.peek('a') // peek does not count as a read
  b.add('d', { size: 30, lastReadAt: 4 })
  t.same(removed.map(r => r[0]), ['b', 'a'])
  t.equal(b.usedBytes, 70)
})

t.test('an entry larger than the cache is refused without evicting anything', async t => {
  const { b, removed } = bound(100)
  b.add('a', { size: 50, lastReadAt: 1 })
  t.equal(b.add('huge', { size: 101, lastReadAt: 2 }), false)
  t.same(removed, [])
  t.equal(b.usedBytes, 50)
})

t.test('reservations: in-flight bytes evict ahead of time and concurrent misses cannot overshoot', async t => {
  const { b, removed } = bound(100)
  b.add('a', { size: 30, lastReadAt: 1 })
  b.add('b', { size: 30, lastReadAt: 2 })
  const r1 = b.reserve(60)
  t.ok(r1)
  t.same(removed.map(r => r[0]), ['a'], 'made room for the reservation')
  t.equal(b.usedBytes + b.reserved, 90)
  t.equal(b.reserve(50), undefined, 'no room beside the first download even with b evicted')
  t.equal(b.usedBytes + b.reserved <= 100, true)
  const r2 = b.reserve(40)
  t.ok(r2, 'evicts b to fit 40')
  t.same(removed.map(r => r[0]), ['a', 'b'])
  t.equal(b.reserved, 100)
  t.equal(b.reserve(101), undefined, 'larger than the cache')
  b.release(r1!)
  b.release(r1!)
  t.equal(b.reserved, 40, 'release is idempotent')
  b.add('c', { size: 60, lastReadAt: 3 })
  t.equal(b.usedBytes + b.reserved, 100)
})

t.test('CACHE_INACTIVE: entries not read for that long expire; a read resets the clock', async t => {
  let now = 1_000_000
  const { b, removed } = bound(1000, { inactiveMs: 100, now: () => now })
  b.add('a', { size: 1, lastReadAt: now })
  b.add('b', { size: 1, lastReadAt: now })
  now += 60
  t.ok(b.get('a'))
  now += 60
  b.purgeInactive()
  t.same(removed, [['b', 'expire']])
  t.ok(b.peek('a'))
  now += 101
  t.equal(b.get('a'), undefined)
  t.same(removed.map(r => r[1]), ['expire', 'expire'])
})

t.test('recency is persisted and read back', async t => {
  const dir = await tempDir(t)
  const file = join(dir, 'recency.json')
  let now = 5000
  const { b } = bound(1000, { recencyFile: file, now: () => now })
  b.add('a', { size: 1, lastReadAt: 1000 })
  b.add('b', { size: 1, lastReadAt: 2000 })
  now = 7000
  b.get('a')
  await b.persist()
  const { b: again } = bound(1000, { recencyFile: file })
  const recency = await again.loadRecency()
  t.same(Object.fromEntries(recency), { a: 7000, b: 2000 })
})
