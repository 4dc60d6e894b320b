/**
 * The short version of bench/load-mixed.ts: 50 concurrent clients for 10 s against the built
 * crossdock (a child process), mixing cache hits, misses, tag resolutions on both doors, hosted
 * pushes and raw tunnels. Asserted: every operation kind ran, none failed, crossdock logged no
 * error, and once the clients closed their connections its open descriptors are back to the
 * baseline taken before the load. RSS is printed, not asserted (it depends on the machine).
 */
import t from 'tap'
import { ensureBuilt } from '../ops/built-cli.js'
import { startLoadTarget, runMixedLoad, MIX, type Op } from '../../helpers/mixed-load.js'

// Descriptors crossdock may rightly hold after the load that it did not before: idle keep-alive
// connections in its upstream pool (undici keeps them for a few seconds) and a file or two it opens
// lazily. A leak of one descriptor per request, or per client, would be hundreds.
const FD_TOLERANCE = 4

await ensureBuilt()
const target = await startLoadTarget()
t.teardown(async () => { await target.stop() })

t.test('50 clients × 10 s of mixed load: no error, descriptors back to baseline', async t => {
  const r = await runMixedLoad(target, { clients: 50, seconds: 10 })
  t.comment(`ops ${JSON.stringify(r.ops)} in ${r.seconds.toFixed(1)} s; RSS MiB baseline ${r.rssMiB.baseline.toFixed(0)}, VmHWM ${r.rssMiB.peak.toFixed(0)}; fds ${r.fds.baseline} → peak ${r.fds.peak} → ${r.fds.after}`)
  for (const op of Object.keys(MIX) as Op[]) t.ok(r.ops[op] > 0, `${op} ran (${r.ops[op]})`)
  t.equal(r.errors, 0, `no failed operation${r.errorSamples.length > 0 ? `: ${r.errorSamples.join(' | ')}` : ''}`)
  t.same(r.serverErrors, [], 'crossdock logged no error')
  t.ok(r.fds.peak > r.fds.baseline, 'the load did open descriptors (the measurement sees them)')
  t.ok(r.fds.after <= r.fds.baseline + FD_TOLERANCE, `descriptors after ${r.fds.after} ≤ baseline ${r.fds.baseline} + ${FD_TOLERANCE}`)
})
