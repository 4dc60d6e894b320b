/**
 * Mixed load: CLIENTS concurrent clients (default 200) for SECONDS (default 60) against the built
 * crossdock as a child process, mixing pull-through cache hits and misses, tag resolutions (both
 * doors), hosted pushes and raw CONNECT tunnels (test/helpers/mixed-load.ts has the mix). Prints
 * operations per kind and per second, errors, crossdock's RSS (baseline, VmHWM, after) and open
 * descriptors (baseline, peak, after the clients closed). Prints figures; asserts nothing
 * (test/integration/reliability/load-short.test.ts runs a short version with assertions).
 *
 *   bench (this process): fake upstream + clients ──► child: `node dist/cli.js serve`
 *
 * Run: npm run build && npx tsx bench/load-mixed.ts   (CLIENTS=… SECONDS=… override)
 */
import { startLoadTarget, runMixedLoad } from '../test/helpers/mixed-load.js'
import { fmt } from './lib.js'

const clients = Number(process.env.CLIENTS ?? 200)
const seconds = Number(process.env.SECONDS ?? 60)

const target = await startLoadTarget()
try {
  console.log(`load-mixed: ${clients} clients for ${seconds} s against crossdock pid ${target.crossdock.proc.pid}`)
  const r = await runMixedLoad(target, { clients, seconds })
  const total = Object.values(r.ops).reduce((a, b) => a + b, 0)
  console.log(`operations: ${total} in ${fmt(r.seconds)} s (${fmt(total / r.seconds)} /s)`)
  for (const [op, n] of Object.entries(r.ops)) console.log(`  ${op.padEnd(9)} ${String(n).padStart(7)}  ${fmt(n / r.seconds).padStart(7)} /s  mean ${fmt(r.meanMs[op as keyof typeof r.meanMs])} ms`)
  console.log(`crossdock CPU: ${fmt(r.cpuSeconds)} s (${fmt(100 * r.cpuSeconds / r.seconds)}% of one core)`)
  console.log(`errors: ${r.errors}${r.errorSamples.length > 0 ? `  e.g. ${r.errorSamples.join(' | ')}` : ''}`)
  console.log(`crossdock error log lines: ${r.serverErrors.length}${r.serverErrors.length > 0 ? `  e.g. ${r.serverErrors[0]}` : ''}`)
  console.log(`RSS MiB: baseline ${fmt(r.rssMiB.baseline)}, peak (VmHWM) ${fmt(r.rssMiB.peak)}, after ${fmt(r.rssMiB.after)}`)
  console.log(`open fds: baseline ${r.fds.baseline}, peak ${r.fds.peak}, after ${r.fds.after}`)
} finally {
  await target.stop()
}
