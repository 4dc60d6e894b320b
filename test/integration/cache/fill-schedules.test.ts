// Issue 13, property-based: fast-check generates herds (clients, each pulling the blobs in its own
// order on one keep-alive connection), a cache roomy or tight enough to evict during reads, blobs
// whose first upstream body is corrupt, and the order in which the fills' steps are let go (every
// step of every fill waits at the cache's fill hook until the schedule releases it). Invariants:
//   - every answer is the whole, correct body with a status line, or an abort of a corrupt fill
//     (never a clean end of a wrong body, never a connection closed without a status line);
//   - with a roomy cache, one upstream GET per good blob and at most two per corrupt one.
import t from 'tap'
import fc from 'fast-check'
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { FillHook } from '../../../src/cache/blob-fill.js'
import { sha256 } from '../../helpers/fake-upstream.js'
import { keepAliveClient, startWithUpstream, type KeepAliveClient } from './harness.js'
import { parseDigest } from '../../../src/oci/digest.js'

const HUB = 'registry-1.docker.io'
const SEED = Number(process.env.FUZZ_SEED ?? 1313)
const RUNS = Number(process.env.HERD_RUNS ?? 12)
const BLOB = 256 << 10

/** Fill steps wait here until the schedule releases one of them (by index among those waiting). */
class StepGate extends EventEmitter {
  private readonly waiting: Array<() => void> = []
  readonly hook: FillHook = async () => {
    await new Promise<void>(resolve => { this.waiting.push(resolve); this.emit('waiting') })
  }

  get pending (): number { return this.waiting.length }

  release (choice: number): void {
    const [go] = this.waiting.splice(choice % this.waiting.length, 1)
    go?.()
  }

  releaseAll (): void {
    for (const go of this.waiting.splice(0)) go()
  }
}

const herd = fc.record({
  blobs: fc.integer({ min: 2, max: 4 }),
  clients: fc.integer({ min: 2, max: 6 }),
  tight: fc.boolean(),
  corrupt: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
  orders: fc.array(fc.array(fc.nat(), { minLength: 4, maxLength: 4 }), { minLength: 6, maxLength: 6 }),
  releases: fc.array(fc.nat(), { minLength: 1, maxLength: 200 }),
})

t.test('herds under generated schedules: whole bodies or aborts of corrupt fills, one GET per blob', async t => {
  const result = await fc.check(fc.asyncProperty(herd, async h => {
    const gate = new StepGate()
    const { up, h: harness } = await startWithUpstream(t, h.tight ? { CACHE_MAX_SIZE: String(Math.floor(BLOB * 1.5)) } : {}, { fillHook: gate.hook })
    try {
      const blobs = Array.from({ length: h.blobs }, () => randomBytes(BLOB))
      const digests = blobs.map(b => up.addBlob(b))
      const corrupt = new Set(digests.filter((_, i) => h.corrupt[i]))
      const spoiled = new Set<string>()
      up.fault = async (_req, res, hit) => {
        const d = digests.find(x => hit.path.endsWith(x))
        if (hit.method !== 'GET' || d === undefined || !corrupt.has(d) || spoiled.has(d)) return false
        spoiled.add(d)
        const bad = Buffer.from(blobs[digests.indexOf(d)] as Buffer)
        bad[bad.length >> 1] ^= 0xff
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bad.length })
        res.end(bad)
        return true
      }
      const problems: string[] = []
      let running = h.clients
      const pullAll = async (c: number): Promise<void> => {
        // This client's order: the blobs sorted by its generated keys.
        const keys = h.orders[c] as number[]
        const order = digests.map((d, i) => ({ d, k: keys[i] ?? 0 })).sort((a, b) => a.k - b.k).map(x => x.d)
        let client: KeepAliveClient | undefined
        try {
          for (const d of order) {
            if (client === undefined || !client.open) client = await keepAliveClient(harness, HUB)
            let r
            try {
              r = await client.get(`/v2/library/c${c}/blobs/${d}`)
            } catch (err) {
              problems.push(`client ${c} ${d.slice(7, 15)}: no status line (${(err as Error).message})`)
              continue
            }
            const whole = r.status === 200 && r.complete && sha256(r.body) === d
            const abortedBad = corrupt.has(d) && (!r.complete || r.status >= 500)
            if (!whole && !abortedBad) problems.push(`client ${c} ${d.slice(7, 15)}: status ${r.status} complete ${String(r.complete)} ${r.body.length} bytes`)
          }
        } finally {
          client?.close()
          running--
          gate.emit('waiting')
        }
      }
      const pulls = Promise.all(Array.from({ length: h.clients }, async (_, c) => { await pullAll(c) }))
      // Drive the fills: release one waiting step at a time, in the generated order.
      let next = 0
      while (running > 0) {
        if (gate.pending === 0) { await new Promise(resolve => gate.once('waiting', resolve)); continue }
        gate.release(h.releases[next++ % h.releases.length] as number)
        // Let the released step run (and new requests arrive) before choosing the next one.
        await new Promise(resolve => setImmediate(resolve))
      }
      await pulls
      gate.releaseAll()
      await harness.cache.blobs.fillsSettled()
      if (!h.tight) {
        for (const d of digests) {
          const gets = up.count('GET', `/blobs/${d}`)
          if (corrupt.has(d) ? gets > 2 : gets !== 1) problems.push(`${d.slice(7, 15)}${corrupt.has(d) ? ' (corrupt first)' : ''}: ${gets} upstream GETs`)
        }
      }
      if (problems.length > 0) throw new Error(problems.join('; '))
    } finally {
      gate.releaseAll()
      await harness.stop()
      await up.stop()
    }
  }), { seed: SEED, numRuns: RUNS, endOnFailure: true })
  if (result.failed) t.fail(`${String((result.errorInstance as Error)?.message ?? result.errorInstance)}\n${fc.defaultReportMessage(result) ?? ''}`)
  else t.pass(`${result.numRuns} generated herds (seed ${SEED})`)
})
