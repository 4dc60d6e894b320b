/**
 * Figures on 2026-11-23 (1 GiB, medians of 3 alternated rounds in one run each; 2 cores shared with
 * other work, load average 8-19, so ratios swing ±0.3 between runs; CPU s/GiB is the steadier signal):
 *
 *                      push MB/s  CPU s/GiB  peak RSS   pull MB/s  CPU s/GiB  peak RSS
 *   before  crossdock      93       4.70      118 MiB      211       1.57      128 MiB
 *           distribution  120       5.36       28 MiB      401       0.46       32 MiB   ratios 0.78 / 0.53
 *   after   crossdock     151       3.94      116 MiB      317       0.63      111 MiB
 *           distribution  131       4.03       28 MiB      478       0.45       32 MiB   ratios 1.15 / 0.66
 *   (two other after-runs: pull ratio 1.10 and 0.75, crossdock pull CPU 0.49 and 0.61 s/GiB)
 *
 * Pull: a ReadStream's fresh 1 MiB buffer per read drove V8 into mark-compacts for external memory
 * (~40/GiB in some processes); recycled buffers (FsObjects.send, util/file-sender.ts) fixed it. distribution pulls by
 * sendfile(2), which Node cannot do for HTTP: its remaining CPU edge. Push: PUT is crossdock's
 * fdatasync of the whole blob (~0.5 s/GiB), which distribution does not do. RSS "before" is the
 * idle process (~107 MiB: the whole service, CA, metrics); a 1 GiB push or pull adds < 15 MiB.
 */
/**
 * Push then pull one generated 1 GiB layer (BENCH_SIZE bytes) the way docker does it — POST an
 * upload, one streamed PATCH, PUT ?digest=, then GET — against crossdock's hosted registry and
 * against CNCF distribution 2.8 (Debian's docker-registry), both as separate processes on
 * 127.0.0.1 with filesystem storage on the same disk, driven by the same client code in this
 * process. Contenders alternate (A B, B A, A B) for BENCH_REPEATS rounds (3); each round pushes a
 * fresh layer (a new digest, so nothing is deduplicated). Prints medians: MB/s, the ratio, server
 * CPU s/GiB (utime+stime from /proc/<pid>/stat, all threads) and peak RSS (VmHWM, reset through
 * /proc/<pid>/clear_refs before each phase). Push is also split into PATCH (bytes) and PUT (commit)
 * seconds. `sync` runs before each phase so one contender's dirty pages are not written back on the
 * other's time. Asserts nothing.
 *
 *   npm run build && npx tsx bench/hosted-push-pull.ts
 *   BENCH_CPU_PROF=<dir> …   profile crossdock instead (push and pull in separate processes, one
 *                            round), keep the .cpuprofile files in <dir>/{push,pull} and print
 *                            the top self-time functions of each
 *
 * Not like for like: crossdock fdatasyncs the blob before the commit rename (durable before
 * visible); distribution does not fsync at all. The PUT column is where that shows.
 */
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { Agent, request } from 'undici'
import { startCrossdock, GiB, MiB } from './lib.js'

const SIZE = Number(process.env.BENCH_SIZE ?? GiB)
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3)
const BLOCK = MiB
const NAME = 'bench/layer'

/** Layer `seed`, generated block by block (each block numbered, so no two are alike); never held whole. */
function * layerBlocks (seed: number): Generator<Buffer> {
  const base = Buffer.alloc(BLOCK)
  for (let i = 0; i < BLOCK; i++) base[i] = (i * 2654435761) >>> 24
  for (let sent = 0, n = 0; sent < SIZE; n++) {
    const block = Buffer.from(base)
    block.writeUInt32BE(n, 0)
    block.writeUInt32BE(seed, 4)
    const len = Math.min(BLOCK, SIZE - sent)
    sent += len
    yield len === BLOCK ? block : block.subarray(0, len)
  }
}

function layerDigest (seed: number): string {
  const h = createHash('sha256')
  for (const b of layerBlocks(seed)) h.update(b)
  return `sha256:${h.digest('hex')}`
}

/** The same /proc readings for every contender. */
function procProbe (pid: number): { cpuSeconds: () => number, resetPeak: () => boolean, peakRssMiB: () => number, rssMiB: () => number } {
  const status = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024
  return {
    cpuSeconds: () => {
      const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
      return (Number(f[11]) + Number(f[12])) / 100 // utime + stime, in USER_HZ ticks
    },
    // "5" resets VmHWM to the current RSS (Linux ≥ 4.0), so each phase gets its own peak.
    resetPeak: () => { try { writeFileSync(`/proc/${pid}/clear_refs`, '5'); return true } catch { return false } },
    peakRssMiB: () => status('VmHWM'),
    rssMiB: () => status('VmRSS'),
  }
}

interface Contender { who: string, base: string, pid: number, stop: () => Promise<void> }
interface Phase { seconds: number, cpu: number, clientCpu: number, rssBeforeMiB: number, peakRssMiB: number, patchSeconds?: number, putSeconds?: number }

const selfCpu = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6 }
let peakResetWorks = true

/** Runs `fn` and reads the server's CPU and peak RSS around it. */
async function measure<T extends object> (c: Contender, fn: () => Promise<T>): Promise<Phase & T> {
  spawnSync('sync')
  const probe = procProbe(c.pid)
  peakResetWorks &&= probe.resetPeak()
  const rssBeforeMiB = probe.rssMiB()
  const cpu0 = probe.cpuSeconds()
  const self0 = selfCpu()
  const t0 = performance.now()
  const extra = await fn()
  const seconds = (performance.now() - t0) / 1000
  return { seconds, cpu: probe.cpuSeconds() - cpu0, clientCpu: selfCpu() - self0, rssBeforeMiB, peakRssMiB: probe.peakRssMiB(), ...extra }
}

async function push (base: string, seed: number, digest: string, dispatcher: Agent): Promise<{ patchSeconds: number, putSeconds: number }> {
  const post = await request(`${base}/v2/${NAME}/blobs/uploads/`, { method: 'POST', dispatcher })
  await post.body.dump()
  if (post.statusCode !== 202) throw new Error(`POST: ${post.statusCode}`)
  const t0 = performance.now()
  const patch = await request(new URL(String(post.headers.location), base), { method: 'PATCH', body: Readable.from(layerBlocks(seed), { objectMode: false }), headers: { 'content-type': 'application/octet-stream' }, dispatcher })
  await patch.body.dump()
  if (patch.statusCode !== 202) throw new Error(`PATCH: ${patch.statusCode}`)
  const t1 = performance.now()
  const location = new URL(String(patch.headers.location), base)
  location.searchParams.set('digest', digest)
  const put = await request(location, { method: 'PUT', dispatcher })
  await put.body.dump()
  if (put.statusCode !== 201) throw new Error(`PUT: ${put.statusCode}`)
  return { patchSeconds: (t1 - t0) / 1000, putSeconds: (performance.now() - t1) / 1000 }
}

async function pull (base: string, digest: string, dispatcher: Agent): Promise<object> {
  const r = await request(`${base}/v2/${NAME}/blobs/${digest}`, { dispatcher })
  let n = 0
  for await (const chunk of r.body) n += (chunk as Buffer).length
  if (r.statusCode !== 200 || n !== SIZE) throw new Error(`GET: ${r.statusCode}, ${n} bytes`)
  return {}
}

async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as AddressInfo).port
  await new Promise(resolve => s.close(resolve))
  return port
}

async function startDistribution (root: string): Promise<Contender> {
  const port = await freePort()
  const cfg = join(root, 'distribution.yml')
  await writeFile(cfg, [
    'version: 0.1',
    'log: { level: error, accesslog: { disabled: true } }',
    `storage: { filesystem: { rootdirectory: ${join(root, 'distribution')} }, delete: { enabled: true } }`,
    `http: { addr: "127.0.0.1:${port}" }`,
  ].join('\n'))
  const proc = spawn('docker-registry', ['serve', cfg], { stdio: ['ignore', 'ignore', 'inherit'] })
  const base = `http://127.0.0.1:${port}`
  for (let i = 0; ; i++) {
    try {
      const r = await request(`${base}/v2/`)
      await r.body.dump()
      if (r.statusCode === 200) break
    } catch (err) {
      if (i > 100) throw err
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }
  const exited = new Promise(resolve => proc.once('exit', resolve))
  return { who: 'distribution', base, pid: proc.pid as number, stop: async () => { proc.kill('SIGTERM'); await exited } }
}

async function startCrossdockContender (storageDir: string, nodeArgs: string[] = []): Promise<Contender> {
  const cd = await startCrossdock({ REGISTRY_STORAGE_DIR: storageDir }, { nodeArgs })
  return {
    who: 'crossdock',
    base: `http://127.0.0.1:${cd.registryPort}`,
    pid: cd.proc.pid as number,
    stop: async () => { await cd.stop(); await rm(cd.dir, { recursive: true, force: true }) },
  }
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] }

async function compare (root: string, dispatcher: Agent): Promise<void> {
  const contenders = [await startCrossdockContender(join(root, 'crossdock')), await startDistribution(root)]
  const results = new Map<string, { push: Phase[], pull: Phase[] }>(contenders.map(c => [c.who, { push: [], pull: [] }]))
  try {
    for (let round = 0; round < REPEATS; round++) {
      const digest = layerDigest(round)
      for (const c of round % 2 === 0 ? contenders : [...contenders].reverse()) {
        const r = results.get(c.who)!
        r.push.push(await measure(c, async () => await push(c.base, round, digest, dispatcher)))
        r.pull.push(await measure(c, async () => await pull(c.base, digest, dispatcher)))
        const [ph, pl] = [r.push.at(-1)!, r.pull.at(-1)!]
        console.log(`  round ${round + 1} ${c.who.padEnd(12)} push ${(SIZE / 1e6 / ph.seconds).toFixed(0)} MB/s (PATCH ${ph.patchSeconds?.toFixed(2)} s, PUT ${ph.putSeconds?.toFixed(2)} s), pull ${(SIZE / 1e6 / pl.seconds).toFixed(0)} MB/s`)
      }
    }
  } finally {
    for (const c of contenders) await c.stop()
  }

  const gib = SIZE / GiB
  const mbs = (ps: Phase[]): number => median(ps.map(p => SIZE / 1e6 / p.seconds))
  console.log(`medians of ${REPEATS} (server process only; client is this process)`)
  for (const dir of ['push', 'pull'] as const) {
    for (const [who, r] of results) {
      const ps = r[dir]
      const split = dir === 'push' ? `  PATCH ${median(ps.map(p => p.patchSeconds ?? 0)).toFixed(2)} s  PUT ${median(ps.map(p => p.putSeconds ?? 0)).toFixed(2)} s` : ''
      console.log(`  ${who.padEnd(13)} ${dir}  ${mbs(ps).toFixed(0).padStart(5)} MB/s  CPU ${median(ps.map(p => p.cpu / gib)).toFixed(2)} s/GiB  peak RSS ${median(ps.map(p => p.peakRssMiB)).toFixed(0)} MiB (${median(ps.map(p => p.rssBeforeMiB)).toFixed(0)} before)  client CPU ${median(ps.map(p => p.clientCpu / gib)).toFixed(2)} s/GiB${split}`)
    }
    console.log(`  ratio crossdock/distribution ${dir} throughput: ${(mbs(results.get('crossdock')![dir]) / mbs(results.get('distribution')![dir])).toFixed(2)}`)
  }
  if (!peakResetWorks) console.log('  (could not reset VmHWM: peak RSS is the process lifetime peak)')
}

/** Top self-time functions of a .cpuprofile (Chrome DevTools format: nodes, samples, timeDeltas). */
function summariseProfile (file: string, top = 15): void {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Array<{ id: number, callFrame: { functionName: string, url: string, lineNumber: number } }>, samples: number[], timeDeltas: number[] }
  const frame = new Map(prof.nodes.map(n => [n.id, n.callFrame]))
  const self = new Map<string, number>()
  let total = 0
  prof.samples.forEach((id, i) => {
    const f = frame.get(id)!
    const key = `${f.functionName === '' ? '(anonymous)' : f.functionName} ${f.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${f.lineNumber + 1}`
    const dt = prof.timeDeltas[i + 1] ?? 0
    self.set(key, (self.get(key) ?? 0) + dt)
    total += dt
  })
  console.log(`  ${file}: ${(total / 1e6).toFixed(2)} s sampled`)
  for (const [key, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`    ${(us / 1e6).toFixed(2).padStart(6)} s ${(100 * us / total).toFixed(1).padStart(5)} %  ${key}`)
  }
}

async function profile (root: string, profDir: string, dispatcher: Agent): Promise<void> {
  const storage = join(root, 'crossdock')
  const digest = layerDigest(0)
  for (const phase of ['push', 'pull'] as const) {
    const dir = join(profDir, phase)
    const c = await startCrossdockContender(storage, ['--cpu-prof', `--cpu-prof-dir=${dir}`])
    try {
      const p = await measure(c, async () => phase === 'push' ? await push(c.base, 0, digest, dispatcher) : await pull(c.base, digest, dispatcher))
      console.log(`${phase}: ${(SIZE / 1e6 / p.seconds).toFixed(0)} MB/s, CPU ${(p.cpu / (SIZE / GiB)).toFixed(2)} s/GiB (profiled)`)
    } finally {
      await c.stop() // the profile is written at exit
    }
    for (const f of readdirSync(dir).filter(f => f.endsWith('.cpuprofile'))) summariseProfile(join(dir, f))
  }
}

async function main (): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'crossdock-hosted-bench-'))
  const profDir = process.env.BENCH_CPU_PROF
  console.log(`hosted push/pull: ${(SIZE / MiB).toFixed(0)} MiB layer, storage under ${root}${profDir !== undefined ? `, profiling crossdock into ${profDir}` : ''}`)
  const dispatcher = new Agent({ keepAliveTimeout: 10_000, bodyTimeout: 0, headersTimeout: 0 })
  try {
    await (profDir !== undefined ? profile(root, profDir, dispatcher) : compare(root, dispatcher))
  } finally {
    await dispatcher.close()
    await rm(root, { recursive: true, force: true })
  }
}

await main()
