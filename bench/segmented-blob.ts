/**
 * One cold blob through crossdock's registry door, segmented or not (issue 20): the fill alone,
 * without a client's unpacking, so the link is what limits it. CNCF distribution 2.8 behind the
 * WAN relay (bench/wan/relay.ts), a fresh crossdock per fetch, curl-like GET of the blob, digest
 * checked; UPSTREAM_SEGMENTS 1 vs 4 (always) vs 4 if the first connection is slower than SEG_RATE
 * (UPSTREAM_SEGMENT_RATE, 12m) interleaved per run. Prints seconds and ratios; asserts nothing.
 *
 *   GET /v2/docker.io/library/big/blobs/<digest> ─► crossdock :5000 ─► relay ─► distribution
 *
 * SEG_BLOB_MIB (64), SEG_RUNS (3), SEG_SCENARIOS (percon,shared), BENCH_SEG_ADDRESS (127.0.0.54).
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import http from 'node:http'
import { createScope, startDistribution, seedImage, startCrossdock, freePort, type Scope } from '../test/helpers/e2e/index.js'
import { startWan } from './wan/relay.js'
import { median } from './peers/stats.js'

const HOST = process.env.BENCH_SEG_ADDRESS ?? '127.0.0.54'
const HUB = 'registry-1.docker.io'
const RUNS = Number(process.env.SEG_RUNS ?? 3)
const SIZE = Math.round(Number(process.env.SEG_BLOB_MIB ?? 64) * 1024 * 1024)
const SCENARIOS = [
  { id: 'percon', name: '50 ms RTT, 50 Mbit/s per connection', delayMs: 25, linkBps: 0, connBps: 50e6 },
  { id: 'shared', name: '50 ms RTT, 200 Mbit/s shared', delayMs: 25, linkBps: 200e6, connBps: 0 },
  { id: 'fast', name: 'unthrottled (loopback, no delay)', delayMs: 0, linkBps: 0, connBps: 0 },
].filter(s => (process.env.SEG_SCENARIOS ?? 'percon,shared').split(',').includes(s.id))
const VARIANTS: Array<[string, Record<string, string>]> = [
  ['one request', { UPSTREAM_SEGMENTS: '1' }],
  ['4 segments', { UPSTREAM_SEGMENTS: '4', UPSTREAM_SEGMENT_MIN_SIZE: '4m', UPSTREAM_SEGMENT_RATE: '0' }],
  ['4 segments if slow', { UPSTREAM_SEGMENTS: '4', UPSTREAM_SEGMENT_MIN_SIZE: '4m', UPSTREAM_SEGMENT_RATE: process.env.SEG_RATE ?? '12m' }],
]

if (process.env.CROSSDOCK_NETNS !== '1') {
  console.log('segmented-blob: skipped (needs root and the private network namespace of `npm run bench`)')
  process.exit(0)
}

const cleanups: Array<() => Promise<void>> = []
const scope: Scope = createScope({ teardown: (fn: () => Promise<void>) => { cleanups.push(fn) }, passing: () => true, comment: console.log, fail: console.log } as never, 'segblob')
const load = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
const loadAtStart = load()
const upstream = await startDistribution(scope, { host: HOST, name: 'upstream' })
const image = await seedImage(scope, upstream, 'library/big', '1', { seed: 'segblob', randomBytes: SIZE, randomLayers: 1 })
const blob = image.layers.reduce((a, b) => (b.size > a.size ? b : a))
console.log(`segmented-blob: ${(blob.size / 1e6).toFixed(1)} MB blob, ${RUNS} runs, load ${loadAtStart}`)

async function fetchBlob (address: string): Promise<number> {
  const t0 = performance.now()
  const digest = await new Promise<string>((resolve, reject) => {
    http.get(`http://${address}/v2/docker.io/library/big/blobs/${blob.digest}`, res => {
      if (res.statusCode !== 200) { reject(new Error(`GET answered ${res.statusCode}`)); return }
      const h = createHash('sha256')
      res.on('data', (c: Buffer) => h.update(c))
      res.on('end', () => { resolve(`sha256:${h.digest('hex')}`) })
      res.on('error', reject)
    }).on('error', reject)
  })
  if (digest !== blob.digest) throw new Error(`wrong body: ${digest}`)
  return (performance.now() - t0) / 1000
}

const lines: string[] = []
try {
  for (const sc of SCENARIOS) {
    const wan = await startWan({ host: HOST, port: 443, target: { host: HOST, port: Number(upstream.address.split(':')[1]) }, delayMs: sc.delayMs, linkBps: sc.linkBps, connBps: sc.connBps })
    const times = new Map<string, number[]>()
    const conns = new Map<string, number[]>()
    for (let run = 1; run <= RUNS; run++) {
      for (const [name, env] of VARIANTS) {
        const registryPort = await freePort(HOST)
        const cd = await startCrossdock(scope, { host: HOST, name: `cd-${sc.id}-${run}-${name.replace(/\W+/g, '-')}`, registryPort, connectTo: { [`${HUB}:443`]: `${HOST}:443` }, env: { LOG_LEVEL: 'warn', ...env } })
        const c0 = wan.connections
        const s = await fetchBlob(`${HOST}:${registryPort}`)
        times.set(name, [...(times.get(name) ?? []), s])
        conns.set(name, [...(conns.get(name) ?? []), wan.connections - c0])
        await cd.stop()
        console.log(`${sc.id} run ${run} ${name}: ${s.toFixed(2)} s, ${wan.connections - c0} upstream connections`)
      }
    }
    await wan.close()
    const base = times.get(VARIANTS[0][0]) ?? []
    for (const [name] of VARIANTS) {
      const xs = times.get(name) ?? []
      lines.push(`| ${sc.name} | ${name} | ${median(xs).toFixed(2)} | ${(median(xs) / median(base)).toFixed(2)}× (${xs.map((x, i) => (x / base[i]).toFixed(2)).join(', ')}) | ${median(conns.get(name) ?? [])} |`)
    }
  }
} finally {
  for (const c of cleanups.reverse()) await c().catch(() => {})
}
console.log(`\nOne cold ${(blob.size / 1e6).toFixed(1)} MB blob through the registry door; load ${loadAtStart} at start, ${load()} at end\n`)
console.log('| scenario | crossdock | median s | vs one request (per run) | upstream connections |\n|---|---|---:|---|---:|')
console.log(lines.join('\n'))
