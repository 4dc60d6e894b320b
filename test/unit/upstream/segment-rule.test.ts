// The rule that turns segments on (segment-rule.ts) inside SegmentedBody, on a test clock that
// advances as the first answer's link delivers: a fast first connection gets the rest as one range,
// a slow one K-1 pieces, a reader that is behind does not make a link slow, a rest piece ahead of a
// slow reader stops reading, a failing rest is asked again; and a property over sizes, rates and
// chunkings that the body is byte-exact and the range requests are what the rule says.
import t from 'tap'
import fc from 'fast-check'
import { randomBytes } from 'node:crypto'
import { setImmediate as tick } from 'node:timers/promises'
import { SegmentedBody, type RangeFetch } from '../../../src/upstream/segmented-body.js'
import { RateProbe, decide, decisionPoint, type SegmentDecision } from '../../../src/upstream/segment-rule.js'
import { SegmentSlots } from '../../../src/upstream/segment-slots.js'
import { readAll, settled, sources, type Fault, type Source } from '../../helpers/range-sources.js'

const THRESHOLD = 10_000_000

interface Run {
  src: Source
  body: SegmentedBody
  slots: SegmentSlots
  decisions: SegmentDecision[]
  /** Bytes the sources had handed out when each range was asked. */
  deliveredAtAsk: number[]
  /** Most slots in use when a range was asked. */
  mostSlots: number
  clock: { now: number }
}

/** A SegmentedBody whose first answer arrives at `linkRate` bytes/s on the test clock. */
function start (data: Buffer, o: { firstSize: number, linkRate: number, chunk?: number, segments?: number, maxPiece?: number, failing?: { index: number, fault: Fault, times: number } }): Run {
  const clock = { now: 0 }
  const src = sources(data, o.chunk ?? 16_384, o.firstSize, o.failing, { beforeSlice: n => { clock.now += n / o.linkRate * 1000 } })
  const slots = new SegmentSlots(8)
  const run = { src, slots, decisions: [], deliveredAtAsk: [], mostSlots: 0, clock } as unknown as Run
  const fetchRange: RangeFetch = async (s, e, signal) => {
    run.deliveredAtAsk.push(src.delivered())
    run.mostSlots = Math.max(run.mostSlots, slots.inUse)
    return await src.fetchRange(s, e, signal)
  }
  run.body = new SegmentedBody({
    first: src.first,
    firstSize: o.firstSize,
    size: data.length,
    segments: o.segments ?? 4,
    slots,
    rate: THRESHOLD,
    maxPiece: o.maxPiece ?? 200_000,
    now: () => clock.now,
    onDecision: d => { run.decisions.push(d) },
    fetchRange,
  })
  return run
}

t.test('the probe: from the first byte, paused time left out; the decision point', async t => {
  let now = 0
  const probe = new RateProbe(() => now)
  t.equal(probe.rate(), 0, 'nothing yet: not fast')
  now = 500
  probe.received(1000)
  t.equal(probe.rate(), Infinity, 'one chunk, no time: it came at once')
  now = 1500
  probe.received(5000)
  t.equal(probe.rate(), 5000, 'time to first byte and the first chunk left out')
  probe.pause()
  now = 3500
  t.equal(probe.rate(), 5000, 'paused now: the pause so far is left out')
  probe.resume()
  now = 4500
  probe.received(5000)
  t.equal(probe.rate(), 5000, '10000 bytes over 2 s flowing')
  t.equal(decisionPoint(4 << 20), 2 << 20, 'half of a 4 MiB first piece')
  t.equal(decisionPoint(512 << 10), 256 << 10)
  t.equal(decisionPoint(511 << 10), 511 << 10, 'a small first piece: its end')
  t.equal(decide(9, 10), 'segmented')
  t.equal(decide(10, 10), 'single')
  t.equal(decide(Infinity, 0), 'segmented', 'threshold 0: always segments')
})

t.test('a fast first connection: the rest as one range, asked at half of the first piece, no slot', async t => {
  const data = randomBytes(2_000_000)
  const r = start(data, { firstSize: 600_000, linkRate: 2 * THRESHOLD })
  const { bytes, error } = await readAll(r.body)
  t.error(error)
  t.ok(bytes.equals(data), 'byte-exact')
  t.same(r.decisions, ['single'])
  t.same(r.src.asked, [[600_000, 1_999_999]], 'one range for the rest')
  t.ok(r.deliveredAtAsk[0] >= 300_000 && r.deliveredAtAsk[0] < 600_000, `asked while the first piece's tail arrived (${r.deliveredAtAsk[0]} bytes in)`)
  t.equal(r.mostSlots, 0, 'it replaces the first connection: no slot taken')
  await settled(r.slots)
  t.equal(r.slots.inUse, 0)
})

t.test('a slow first connection: K-1 workers over the pieces, as with the rule off', async t => {
  const data = randomBytes(2_000_000)
  const r = start(data, { firstSize: 600_000, linkRate: THRESHOLD / 2 })
  const { bytes, error } = await readAll(r.body)
  t.error(error)
  t.ok(bytes.equals(data), 'byte-exact')
  t.same(r.decisions, ['segmented'])
  t.same(r.src.asked.map(a => a[0]), [600_000, 800_000, 1_000_000, 1_200_000, 1_400_000, 1_600_000, 1_800_000], '7 pieces of 200 000')
  t.ok(r.deliveredAtAsk.slice(0, 3).every(n => n >= 300_000 && n < 600_000), `the first K-1 asked at half of the first piece (${r.deliveredAtAsk.slice(0, 3).join(', ')})`)
  t.ok(r.mostSlots > 0, 'the workers hold slots')
  await settled(r.slots)
  t.equal(r.slots.inUse, 0)
})

t.test('a reader that is behind does not make a fast link look slow', async t => {
  const data = randomBytes(2_000_000)
  const r = start(data, { firstSize: 600_000, linkRate: 2 * THRESHOLD })
  // The reader thinks 1 s (test clock) per read once the fast link has filled what it may (the
  // body's buffer, then the paused piece): ≤ 64 KiB/s if its time counted, far below the threshold.
  const chunks: Buffer[] = []
  for await (const c of r.body) {
    chunks.push(c as Buffer)
    for (let i = 0; i < 20; i++) await tick()
    r.clock.now += 1000
  }
  t.ok(Buffer.concat(chunks).equals(data), 'byte-exact')
  t.same(r.decisions, ['single'], `decided on the link's rate (clock at ${r.clock.now} ms)`)
  t.equal(r.src.asked.length, 1)
})

t.test('a slow reader: the rest piece ahead stops reading once it holds a piece', async t => {
  const data = randomBytes(3_000_000)
  const maxPiece = 100_000
  const chunk = 16_384
  // Decided at half of the first piece: the rest flows while the reader is still in the first.
  const r = start(data, { firstSize: 600_000, linkRate: 2 * THRESHOLD, maxPiece, chunk })
  let ahead = 0
  const { bytes } = await readAll(r.body, 20, consumed => { ahead = Math.max(ahead, r.src.delivered() - consumed) })
  t.ok(bytes.equals(data), 'byte-exact')
  t.same(r.src.asked, [[600_000, 2_999_999]], 'one range for 2.4 MB')
  // One piece held ahead, the readable's buffer, the sources' own buffers and chunks in flight.
  const bound = maxPiece + (64 << 10) + (16 << 10) + 4 * chunk
  t.ok(ahead <= bound, `${ahead} bytes ahead ≤ ${bound}`)
  t.ok(ahead >= maxPiece, `the rest was fetched ahead at all (${ahead})`)
})

t.test('a failing rest request is asked again for its missing bytes, or fails the body', async t => {
  const data = randomBytes(2_000_000)
  for (const fault of ['reset', 'status-500', 'short'] as const) {
    const r = start(data, { firstSize: 600_000, linkRate: 2 * THRESHOLD, failing: { index: 0, fault, times: 1 } })
    const { bytes, error } = await readAll(r.body)
    t.error(error, fault)
    t.ok(bytes.equals(data), `${fault}: byte-exact`)
    t.equal(r.src.asked.length, 2, `${fault}: asked twice`)
    t.ok(r.src.asked.every(a => a[1] === 1_999_999) && r.src.asked[1][0] >= 600_000, `${fault}: the second time from where it stopped (${JSON.stringify(r.src.asked)})`)
  }
  const r = start(data, { firstSize: 600_000, linkRate: 2 * THRESHOLD, failing: { index: 0, fault: 'reset', times: 3 } })
  const { bytes, error } = await readAll(r.body)
  t.match(error, { code: 'ECONNRESET' }, 'three resets: the body fails with the last')
  t.ok(bytes.equals(data.subarray(0, bytes.length)), 'never a wrong byte')
  await settled(r.slots)
  t.equal(r.slots.inUse, 0)
})

t.test('property: byte-exact, and the range requests are what the rule says', async t => {
  await fc.assert(fc.asyncProperty(
    fc.integer({ min: 2, max: 1_500_000 }), fc.double({ min: 0.01, max: 1, noNaN: true }), fc.integer({ min: 512, max: 70_000 }),
    fc.integer({ min: 2, max: 5 }), fc.integer({ min: 1, max: 12 }), fc.oneof(fc.double({ min: 0.05, max: 0.95, noNaN: true }), fc.double({ min: 1.05, max: 20, noNaN: true })),
    fc.integer({ min: 0, max: 2 }),
    async (size, firstShare, chunk, segments, nPieces, speed, pace) => {
      const firstSize = Math.max(1, Math.floor(size * firstShare))
      const maxPiece = Math.ceil(size / nPieces)
      const data = randomBytes(size)
      const r = start(data, { firstSize, linkRate: speed * THRESHOLD, chunk, segments, maxPiece })
      const { bytes, error } = await readAll(r.body, pace)
      if (error !== undefined) throw error
      if (!bytes.equals(data)) throw new Error('body differs')
      if (firstSize >= size) {
        if (r.src.asked.length !== 0 || r.decisions.length !== 0) throw new Error('a blob within the first piece asked for more')
        return
      }
      // One chunk that reaches the decision point took no time: it came at once, not a slow link.
      const atOnce = Math.min(chunk, firstSize) >= decisionPoint(firstSize)
      const expected: SegmentDecision = atOnce || speed >= 1 ? 'single' : 'segmented'
      if (r.decisions.join() !== expected) throw new Error(`decided ${r.decisions.join()}, not ${expected}`)
      const rest = size - firstSize
      const piece = Math.min(maxPiece, Math.ceil(rest / (segments - 1)))
      const ranges = expected === 'single' ? [[firstSize, size - 1]] : Array.from({ length: Math.ceil(rest / piece) }, (_, i) => [firstSize + i * piece, Math.min(size, firstSize + (i + 1) * piece) - 1])
      const asked = [...r.src.asked].sort((a, b) => a[0] - b[0])
      if (JSON.stringify(asked) !== JSON.stringify(ranges)) throw new Error(`asked ${JSON.stringify(asked)}, expected ${JSON.stringify(ranges)}`)
      await settled(r.slots)
      if (r.slots.inUse !== 0) throw new Error(`${r.slots.inUse} slots kept`)
    }), { numRuns: 80 })
})
