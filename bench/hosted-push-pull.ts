/**
 * Push then pull one generated 1 GiB layer (BENCH_SIZE bytes) the way docker does it — POST an
 * upload, one streamed PATCH, PUT ?digest=, then GET — against crossdock's hosted registry (in this
 * process, behind createRegistryServer) and against CNCF distribution 2.8 (Debian's docker-registry,
 * filesystem storage on the same disk, plain HTTP on 127.0.0.1). Prints MB/s each way and the ratio,
 * CPU seconds per GiB and peak RSS. Asserts nothing.
 *
 * CPU: crossdock's is process.cpuUsage() of this process, which also runs the client; the client's
 * own share is measured while it talks to distribution (same bytes, same work) and subtracted.
 * distribution's is utime+stime from /proc/<pid>/stat.
 *
 *   npx tsx bench/hosted-push-pull.ts
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { Agent, request } from 'undici'
import { loadConfig } from '../src/config/index.js'
import { createSilentLogger } from '../src/log.js'
import { createHostedRegistry } from '../src/registry/hosted-registry.js'
import { createRegistryServer } from '../src/registry/registry-server.js'

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const SIZE = Number(process.env.BENCH_SIZE ?? GiB)
const BLOCK = MiB
const NAME = 'bench/layer'

/** The layer, generated block by block (each block numbered, so no two are alike); never held whole. */
function * layerBlocks (): Generator<Buffer> {
  const base = Buffer.alloc(BLOCK)
  for (let i = 0; i < BLOCK; i++) base[i] = (i * 2654435761) >>> 24
  for (let sent = 0, n = 0; sent < SIZE; n++) {
    const block = Buffer.from(base)
    block.writeUInt32BE(n, 0)
    const len = Math.min(BLOCK, SIZE - sent)
    sent += len
    yield len === BLOCK ? block : block.subarray(0, len)
  }
}

function layerDigest (): string {
  const h = createHash('sha256')
  for (const b of layerBlocks()) h.update(b)
  return `sha256:${h.digest('hex')}`
}

interface Probe { cpuSeconds: () => number, rssMiB: () => number }

const selfProbe: Probe = {
  cpuSeconds: () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6 },
  rssMiB: () => process.memoryUsage().rss / MiB,
}

function procProbe (pid: number): Probe {
  return {
    cpuSeconds: () => {
      const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
      return (Number(f[11]) + Number(f[12])) / 100 // utime + stime, in USER_HZ ticks
    },
    rssMiB: () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024,
  }
}

interface Phase { seconds: number, cpu: number, clientCpu: number, peakRssMiB: number }

/** Runs `fn`, timing it and sampling the server's CPU and RSS (and this process's CPU, the client's). */
async function measure (server: Probe, fn: () => Promise<void>): Promise<Phase> {
  let peak = server.rssMiB()
  const sampler = setInterval(() => { peak = Math.max(peak, server.rssMiB()) }, 50)
  const cpu0 = server.cpuSeconds()
  const self0 = selfProbe.cpuSeconds()
  const t0 = process.hrtime.bigint()
  await fn()
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  clearInterval(sampler)
  peak = Math.max(peak, server.rssMiB())
  return { seconds, cpu: server.cpuSeconds() - cpu0, clientCpu: selfProbe.cpuSeconds() - self0, peakRssMiB: peak }
}

async function push (base: string, digest: string, dispatcher: Agent): Promise<void> {
  const post = await request(`${base}/v2/${NAME}/blobs/uploads/`, { method: 'POST', dispatcher })
  await post.body.dump()
  if (post.statusCode !== 202) throw new Error(`POST: ${post.statusCode}`)
  const patch = await request(new URL(String(post.headers.location), base), { method: 'PATCH', body: Readable.from(layerBlocks(), { objectMode: false }), headers: { 'content-type': 'application/octet-stream' }, dispatcher })
  await patch.body.dump()
  if (patch.statusCode !== 202) throw new Error(`PATCH: ${patch.statusCode}`)
  const location = new URL(String(patch.headers.location), base)
  location.searchParams.set('digest', digest)
  const put = await request(location, { method: 'PUT', dispatcher })
  await put.body.dump()
  if (put.statusCode !== 201) throw new Error(`PUT: ${put.statusCode}`)
}

async function pull (base: string, digest: string, dispatcher: Agent): Promise<void> {
  const r = await request(`${base}/v2/${NAME}/blobs/${digest}`, { dispatcher })
  let n = 0
  for await (const chunk of r.body) n += (chunk as Buffer).length
  if (r.statusCode !== 200 || n !== SIZE) throw new Error(`GET: ${r.statusCode}, ${n} bytes`)
}

async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as AddressInfo).port
  await new Promise(resolve => s.close(resolve))
  return port
}

async function startDistribution (root: string): Promise<{ base: string, pid: number, stop: () => void }> {
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
  return { base, pid: proc.pid as number, stop: () => proc.kill('SIGTERM') }
}

async function main (): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'crossdock-hosted-bench-'))
  console.log(`hosted push/pull: ${(SIZE / MiB).toFixed(0)} MiB layer, storage under ${root}`)
  const digest = layerDigest()
  const dispatcher = new Agent({ keepAliveTimeout: 10_000, bodyTimeout: 0, headersTimeout: 0 })

  const config = loadConfig({ REGISTRY_STORAGE_DIR: join(root, 'crossdock'), REGISTRY_PORT: '0', LISTEN_HOST: '127.0.0.1' })
  const hosted = await createHostedRegistry({ config, log: createSilentLogger() })
  const server = createRegistryServer({ config, log: createSilentLogger(), hosted })
  const crossdockBase = `http://127.0.0.1:${(await server.listen()).port}`
  const distribution = await startDistribution(root)
  const distProbe = procProbe(distribution.pid)

  const results: Record<string, { push: Phase, pull: Phase }> = {}
  try {
    // distribution first: its phases also measure what the client alone costs this process.
    results.distribution = {
      push: await measure(distProbe, async () => await push(distribution.base, digest, dispatcher)),
      pull: await measure(distProbe, async () => await pull(distribution.base, digest, dispatcher)),
    }
    results.crossdock = {
      push: await measure(selfProbe, async () => await push(crossdockBase, digest, dispatcher)),
      pull: await measure(selfProbe, async () => await pull(crossdockBase, digest, dispatcher)),
    }
  } finally {
    distribution.stop()
    await dispatcher.close()
    await server.close()
    await hosted.close()
  }

  const gib = SIZE / GiB
  const mbs = (p: Phase): number => SIZE / 1e6 / p.seconds
  const client = results.distribution
  const row = (who: string, dir: 'push' | 'pull'): string => {
    const p = results[who][dir]
    const cpu = who === 'crossdock' ? Math.max(0, p.cpu - client[dir].clientCpu) : p.cpu
    const note = who === 'crossdock' ? ` (process ${(p.cpu / gib).toFixed(2)} incl. client)` : ''
    return `  ${who.padEnd(13)} ${dir}  ${mbs(p).toFixed(0).padStart(6)} MB/s  ${(p.seconds).toFixed(2).padStart(6)} s  CPU ${(cpu / gib).toFixed(2)} s/GiB${note}  peak RSS ${p.peakRssMiB.toFixed(0)} MiB`
  }
  for (const dir of ['push', 'pull'] as const) {
    console.log(row('crossdock', dir))
    console.log(row('distribution', dir))
    console.log(`  ratio crossdock/distribution ${dir} throughput: ${(mbs(results.crossdock[dir]) / mbs(results.distribution[dir])).toFixed(2)}`)
  }
  console.log(`  client alone (this process, measured against distribution): push ${(client.push.clientCpu / gib).toFixed(2)} s/GiB, pull ${(client.pull.clientCpu / gib).toFixed(2)} s/GiB`)
  await rm(root, { recursive: true, force: true })
}

await main()
