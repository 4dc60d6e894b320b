// The prefetch queue against a host's link (prefetch.ts + host-streams.ts): with a made-up clock
// and stub fills whose bytes a simulated link hands out, the prefetcher adds streams where the link
// caps each connection and none beyond the clients' own where the link is already full. No timers.
import t from 'tap'
import { EventEmitter } from 'node:events'
import { Readable } from 'node:stream'
import { pino } from 'pino'
import { Prefetcher, type PassedManifest, type PrefetchCache } from '../../../src/mirror/prefetch.js'
import { tryParseDigest } from '../../../src/oci/digest.js'

const HOST = 'registry-1.docker.io'
const d = (i: number): string => `sha256:${i.toString(16).padStart(64, '0')}`
const SIZE = 10_000_000

/** A download in flight: `written` grows as the link hands it bytes; `done` resolves at SIZE. */
class FakeFill extends EventEmitter {
  written = 0
  readonly done: Promise<void>
  finish!: () => void
  constructor (readonly digest = tryParseDigest(d(0))!, readonly expectedSize = SIZE) {
    super()
    this.done = new Promise(resolve => { this.finish = resolve })
  }
}

function setup (concurrency = 8) {
  let now = 0
  const prefetched: FakeFill[] = []
  const cache: PrefetchCache = {
    stat: () => undefined,
    inflight: () => undefined,
    openOrFill: async (digest, fetch) => {
      await fetch()
      const fill = new FakeFill(digest)
      prefetched.push(fill)
      return { kind: 'fill', leader: true, fill: fill as never, handle: { release: () => {} } as never }
    },
  }
  const p = new Prefetcher({
    cache, log: pino({ level: 'silent' }), concurrency, imageBudget: 2 ** 40,
    timers: { now: () => now, setInterval: () => ({}), clearInterval: () => {} },
  })
  const manifest: PassedManifest = {
    host: HOST, repository: 'library/x', mediaType: 'application/vnd.oci.image.manifest.v1+json',
    bytes: Buffer.from(JSON.stringify({ config: { digest: d(1), size: SIZE }, layers: Array.from({ length: 10 }, (_, i) => ({ digest: d(i + 2), size: SIZE })) })),
    fetch: async () => ({ answer: { status: 200, headers: {}, body: Readable.from([]), url: '', ms: 0 } }),
  }
  /**
   * Runs the link for `ms`: every 10 ms, `rate(n)` bytes per ms shared equally by the n fills
   * running (clients' and prefetch's), fills that reach SIZE finish; the prefetcher samples.
   */
  const run = async (clients: FakeFill[], rate: (n: number) => number, ms: number): Promise<number> => {
    let most = 0
    for (let end = now + ms; now < end; now += 10) {
      const running = [...clients, ...prefetched].filter(f => f.written < SIZE)
      most = Math.max(most, prefetched.filter(f => f.written < SIZE).length)
      for (const f of running) {
        f.written = Math.min(SIZE, f.written + rate(running.length) * 10 / running.length)
        if (f.written === SIZE) f.finish()
      }
      p.sampleHosts()
      await new Promise(resolve => setImmediate(resolve)) // the prefetcher's tasks run
    }
    return most
  }
  return { p, manifest, prefetched, run, clientFill: () => { const f = new FakeFill(); p.noteFill(HOST, f); return f } }
}

t.test('a link capping each connection (6.25 kB/ms each): prefetch grows past the clients to its concurrency', async t => {
  const { p, manifest, prefetched, run, clientFill } = setup(8)
  const clients = [clientFill(), clientFill(), clientFill()]
  p.manifestPassed(manifest)
  await run(clients, n => n * 6250, 50)
  t.equal(prefetched.length, 0, 'at first none: the clients\' three streams are past the starting limit of 2')
  const most = await run(clients, n => n * 6250, 1500)
  t.equal(most, 8, 'then PREFETCH_CONCURRENCY downloads at once')
  t.equal(p.stats().started, prefetched.length)
  p.stop()
})

t.test('a full shared link (25 kB/ms for all): prefetch adds no stream beyond the clients\' three, bar probes', async t => {
  const { p, manifest, prefetched, run, clientFill } = setup(8)
  const clients = [clientFill(), clientFill(), clientFill()]
  p.manifestPassed(manifest)
  const most = await run(clients, () => 25_000, 1000)
  t.ok(most <= 3, `at most three prefetch downloads beside the clients' (the first probe: ${most})`)
  t.ok(p.stats().queued >= 7, `the rest waits in the queue (${p.stats().queued})`)
  const later = await run(clients, () => 25_000, 3000)
  t.ok(later <= 3, `then no more at once, the clients' done or not (the probe's run on, nothing new joins them): ${later}`)
  // The clients' downloads end: the link is free, the prefetcher carries on with the image alone.
  for (const c of clients) { c.written = SIZE; c.finish() }
  await run([], () => 25_000, 8000)
  t.equal(prefetched.length, 11, 'every blob was prefetched in the end')
  t.equal(prefetched.filter(f => f.written === SIZE).length, 11, 'and completed')
  await p.idle()
})

t.test('a host whose link is full does not hold back another host\'s prefetch', async t => {
  const { p, manifest, prefetched, run, clientFill } = setup(8)
  const clients = [clientFill(), clientFill(), clientFill()]
  p.manifestPassed(manifest)
  await run(clients, () => 25_000, 20)
  t.equal(prefetched.length, 0, 'docker.io: the clients\' three streams are past its limit')
  const other = JSON.parse(manifest.bytes.toString()) as { config: { digest: string }, layers: Array<{ digest: string }> }
  other.config.digest = d(101)
  other.layers = other.layers.slice(0, 3).map((l, i) => ({ ...l, digest: d(102 + i) }))
  p.manifestPassed({ ...manifest, host: 'ghcr.io', bytes: Buffer.from(JSON.stringify(other)) })
  await run(clients, () => 25_000, 20)
  t.same(prefetched.map(f => f.digest.value), [d(101), d(102)], 'ghcr.io: its first two blobs start, past the ones queued for docker.io')
  p.stop()
})

t.test('PREFETCH_ADAPTIVE=false: PREFETCH_CONCURRENCY at once, whatever the link', async t => {
  const { manifest } = setup()
  const started: string[] = []
  const cache: PrefetchCache = {
    stat: () => undefined,
    inflight: () => undefined,
    openOrFill: async (digest) => { started.push(digest.value); return await new Promise(() => {}) },
  }
  const p = new Prefetcher({ cache, log: pino({ level: 'silent' }), concurrency: 8, adaptive: false, imageBudget: 2 ** 40 })
  p.manifestPassed(manifest)
  await new Promise(resolve => setImmediate(resolve))
  t.equal(started.length, 8)
})
