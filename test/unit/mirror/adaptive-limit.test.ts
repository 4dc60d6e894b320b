// The per-host stream limit of prefetching (src/mirror/adaptive-limit.ts), driven by a simulated
// link: a made-up clock, streams = what the clients run plus what the limit lets prefetch add, and
// bytes = the link's rate for that many streams. No timers, no sleeps.
import t from 'tap'
import fc from 'fast-check'
import { AdaptiveLimit, SPAN_MS } from '../../../src/mirror/adaptive-limit.js'

const MB = 1e6
const STEP_MS = 10

interface Link {
  /** Aggregate bytes per ms the host sends with n streams. */
  rate: (n: number) => number
  /** Streams the clients run themselves (prefetch adds up to the limit). */
  clients: number
  /** Delay before a stream the limit allows starts bringing bytes (request + RTT). */
  lagMs: number
}

/** Runs `ms` of a pull; returns the limit after each step. */
function simulate (limit: AdaptiveLimit, link: Link, ms: number): number[] {
  let bytes = 0
  let streams = link.clients
  const seen: number[] = []
  const pending: Array<{ at: number, n: number }> = []
  for (let now = 0; now <= ms; now += STEP_MS) {
    const wanted = Math.max(link.clients, limit.limit)
    if (wanted !== (pending.at(-1)?.n ?? streams)) pending.push({ at: now + link.lagMs, n: wanted })
    while (pending.length > 0 && pending[0].at <= now) streams = pending.shift()!.n
    limit.observe(now, bytes, streams)
    bytes += link.rate(streams) * STEP_MS
    seen.push(limit.limit)
  }
  return seen
}

const perConnection = (capPerMs: number) => (n: number) => n * capPerMs
const shared = (linkPerMs: number) => (n: number) => n > 0 ? linkPerMs : 0

t.test('a link that caps each connection: the limit doubles to the maximum within 1.6 s', async t => {
  const limit = new AdaptiveLimit({ initial: 2, min: 1, max: 16 })
  // 50 Mbit/s per connection, dockerd's 3 streams, 60 ms until a new stream brings bytes.
  const seen = simulate(limit, { rate: perConnection(6.25 * MB / 1000), clients: 3, lagMs: 60 }, 3000)
  const at = (n: number): number => seen.findIndex(l => l >= n) * STEP_MS
  // A first span of warm-up, one baseline, then doubling per span and settle (300 + 100 ms).
  t.ok(at(8) >= 0 && at(8) <= 1100, `8 streams allowed after ${at(8)} ms`)
  t.ok(at(16) >= 0 && at(16) <= 1600, `16 after ${at(16)} ms`)
  t.equal(seen.at(-1), 16, 'and kept')
})

t.test('a full shared link: the limit stays at the clients\' own streams, after one doubling, probing one more now and then', async t => {
  const limit = new AdaptiveLimit({ initial: 2, min: 1, max: 16 })
  // 200 Mbit/s shared by every stream.
  const seen = simulate(limit, { rate: shared(25 * MB / 1000), clients: 3, lagMs: 60 }, 10_000)
  const above = seen.filter(l => l > 3).length / seen.length
  t.ok(above < 0.25, `limit above the clients' 3 streams ${(above * 100).toFixed(0)}% of the time`)
  t.ok(Math.max(...seen) <= 6, `the first probe doubles them (max ${Math.max(...seen)})`)
  const later = seen.slice(1000 / STEP_MS)
  t.ok(Math.max(...later) <= 4, `after the first second, never more than one beyond them (max ${Math.max(...later)})`)
})

t.test('a link that fills at 4 streams (per-connection cap under a shared rate): the limit ends at or above 4, below the maximum', async t => {
  const limit = new AdaptiveLimit({ initial: 2, min: 1, max: 16 })
  const seen = simulate(limit, { rate: n => Math.min(n, 4) * 6.25 * MB / 1000, clients: 1, lagMs: 60 }, 10_000)
  const last = seen.slice(-200)
  t.ok(Math.min(...last) >= 4, `at least 4 (min over the last 2 s: ${Math.min(...last)})`)
  t.ok(Math.max(...last) < 16, `no climb to the maximum (max ${Math.max(...last)})`)
})

t.test('the gain decides: a full link shrinks the limit, a blurred one (a loaded machine) leaves it', async t => {
  // One span at 6 streams, 6 bytes/ms, then one at 3 streams: what the 3 streams brought decides.
  const after = (rateAt3: number): number => {
    const limit = new AdaptiveLimit({ initial: 16, min: 1, max: 16 })
    limit.observe(0, 0, 6)
    limit.observe(SPAN_MS, 6 * SPAN_MS, 6) // the first span only warms up
    limit.observe(2 * SPAN_MS, 12 * SPAN_MS, 3)
    limit.observe(3 * SPAN_MS, 12 * SPAN_MS + rateAt3 * SPAN_MS, 3)
    return limit.limit
  }
  t.equal(after(6), 3, 'half the streams, the same bytes: full, the limit drops to 3')
  t.equal(after(3), 16, 'half the streams, half the bytes: it scales, the limit stays high')
  t.equal(after(4.5), 16, 'a third of the share lost: no verdict, the limit stays')
})

t.test('the start of a pull (streams and bytes ramping up) is no evidence: on a full link the limit stays low', async t => {
  const limit = new AdaptiveLimit({ initial: 2, min: 1, max: 16 })
  // First span: 1 stream, the link a quarter busy (requests on their way); then 2.5 streams, full.
  limit.observe(0, 0, 1)
  limit.observe(SPAN_MS, 0.25 * 25_000 * SPAN_MS, 2.5)
  limit.observe(2 * SPAN_MS, 1.25 * 25_000 * SPAN_MS, 2.5)
  t.equal(limit.last, undefined, 'no verdict drawn from the ramp (before: "scales", gain 2)')
  t.equal(limit.limit, 6, 'the second span probes: twice its 3 streams, to be weighed against it next')
})

t.test('an idle gap: no verdict compares the pull before it with the one after', async t => {
  const limit = new AdaptiveLimit({ initial: 8, min: 1, max: 16 })
  limit.observe(0, 0, 1)
  limit.observe(SPAN_MS, 100 * MB, 1)
  limit.observe(10 * SPAN_MS, 100 * MB, 0) // nothing ran for a while
  limit.observe(11 * SPAN_MS, 100 * MB + 1, 4)
  limit.observe(12 * SPAN_MS, 100 * MB + 2, 4) // 4 streams, almost no bytes: would read as "full"
  t.equal(limit.limit, 8, 'the limit is unchanged')
})

t.test('whatever it is fed, the limit is an integer within [min, max]', async t => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 20 }),
    fc.array(fc.record({ dt: fc.integer({ min: 0, max: 400 }), dBytes: fc.nat({ max: 50_000_000 }), streams: fc.nat({ max: 40 }) }), { maxLength: 300 }),
    (min, extra, initial, steps) => {
      const max = min + extra
      const limit = new AdaptiveLimit({ initial, min, max })
      let now = 0; let bytes = 0
      for (const s of steps) {
        now += s.dt; bytes += s.dBytes
        limit.observe(now, bytes, s.streams)
        if (!Number.isInteger(limit.limit) || limit.limit < min || limit.limit > max) return false
      }
      return true
    },
  ))
  t.pass('held for every generated sequence')
})
