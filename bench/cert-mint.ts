/**
 * Leaf minting cost: 50 new hosts minted one after another, with the event loop's worst delay
 * meanwhile (what every other connection would feel). Prints figures; asserts nothing.
 * Run: npx tsx bench/cert-mint.ts
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { createSilentLogger } from '../src/log.js'
import { loadOrCreateCa } from '../src/tls/ca.js'
import { LeafCertMinter } from '../src/tls/leaf-certs.js'

const HOSTS = 50

async function main (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'crossdock-bench-'))
  try {
    let t0 = performance.now()
    const ca = await loadOrCreateCa({ caDir: join(dir, 'ca'), log: createSilentLogger() })
    const caMs = performance.now() - t0
    const minter = new LeafCertMinter(ca)
    t0 = performance.now()
    await minter.init()
    const initMs = performance.now() - t0

    // Warm-up outside the measurement: first-call JIT and lazy module state.
    for (let i = 0; i < 5; i++) await minter.secureContextFor(`warmup-${i}.bench`)

    const loop = monitorEventLoopDelay({ resolution: 1 })
    const latencies: number[] = []
    loop.enable()
    for (let i = 0; i < HOSTS; i++) {
      const start = performance.now()
      await minter.secureContextFor(`host-${i}.registry.bench`)
      latencies.push(performance.now() - start)
    }
    loop.disable()

    t0 = performance.now()
    for (let i = 0; i < HOSTS; i++) await minter.secureContextFor(`host-${i}.registry.bench`)
    const hitMs = (performance.now() - t0) / HOSTS

    latencies.sort((a, b) => a - b)
    const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]
    const f = (ms: number): string => ms.toFixed(2)
    const rows: Array<[string, string]> = [
      ['root CA create (RSA-2048 keygen + self-sign)', `${f(caMs)} ms`],
      ['minter init (shared leaf key + self-test)', `${f(initMs)} ms`],
      [`new-host mint, ${HOSTS} hosts in sequence`, `p50 ${f(pct(0.5))} ms  p90 ${f(pct(0.9))} ms  max ${f(latencies[latencies.length - 1])} ms`],
      // The histogram's 1 ms resolution sets its floor: a mean near 1 ms means an idle loop.
      ['event-loop delay while minting', `max ${f(loop.max / 1e6)} ms  mean ${f(loop.mean / 1e6)} ms`],
      ['cache hit', `${f(hitMs * 1000)} µs per call`],
      ['minted', String(minter.minted)],
    ]
    for (const [what, figure] of rows) console.log(`${what.padEnd(46)} ${figure}`)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
