/**
 * crossdock against its peers, in one run (issue 9): the upstream itself, crossdock, nginx with
 * rpardini's proxy_cache directives, and distribution 2.8 as a pull-through cache, all on loopback
 * inside the private network namespace scripts/run-bench.mjs makes (where registry-1.docker.io
 * resolves to 127.0.0.1 and the fake upstream listens on :443).
 *
 *   driver (this process: clients, figures) ──► contender ──► upstream child (paced 100 MB/s)
 *
 * Scenarios (bench/peers/*): 1 cold herds, 2 warm hits, 3 tag resolution, 4 peak RSS with slow
 * clients, 5 hosted push/pull vs distribution, 6 crossdock-only (mint latency, docker pull), then
 * CPU profiles of crossdock on the pull paths. Each scenario runs PEERS_REPS times per contender,
 * interleaved; the report has medians and ratios. Prints and writes figures; asserts nothing.
 *
 * Knobs (for building and debugging with small sizes): PEERS_BLOB_MIB (512), PEERS_RATE_MBPS (100),
 * PEERS_REPS (3), PEERS_HERDS (8,32), PEERS_RSS_READ_MIB (128), PEERS_HOSTED_MIB (1024),
 * PEERS_TAG_REQUESTS (200), PEERS_LAYER_MIB (8), PEERS_ONLY (e.g. "herd,tags"), PEERS_OUT
 * (bench/results), PEERS_KEEP=1 keeps the state directory.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { loadavg, cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { startUpstream } from './peers/upstream.js'
import { direct, startCrossdock, startDistribution, startNginx, ROOT, type Contender } from './peers/contenders.js'
import { coldHerd, warmHits, tagResolution, slowClientsRss, type Figures } from './peers/pull-scenarios.js'
import { GeneratedBlob, pushPull } from './peers/hosted.js'
import { mintHosts, mintLatency, startBenchDockerd, dockerPull } from './peers/crossdock-only.js'
import { summarizeProfile } from './peers/profile.js'
import { chartPanels, markdown, targets, writeChart, type Results } from './peers/report.js'
import { fmt } from './peers/stats.js'
import { hwmMiB, sampleRss } from './peers/procstat.js'

const MiB = 1024 * 1024
const env = (k: string, d: string): string => process.env[k] ?? d
const BLOB = Number(env('PEERS_BLOB_MIB', '512')) * MiB
const RATE = Number(env('PEERS_RATE_MBPS', '100')) * 1e6
const REPS = Number(env('PEERS_REPS', '3'))
const HERDS = env('PEERS_HERDS', '8,32').split(',').map(Number)
const RSS_READ = Number(env('PEERS_RSS_READ_MIB', '128')) * MiB
const HOSTED = Number(env('PEERS_HOSTED_MIB', '1024')) * MiB
const TAG_REQUESTS = Number(env('PEERS_TAG_REQUESTS', '200'))
const LAYER = Number(env('PEERS_LAYER_MIB', '8')) * MiB
const MINT_HOSTS = 50
const ONLY = new Set(env('PEERS_ONLY', 'herd,warm,tags,rss,hosted,mint,docker,profile').split(','))
const OUT = env('PEERS_OUT', join(ROOT, 'bench/results'))

function version (cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  return (r.stdout + r.stderr).trim().split('\n')[0] ?? '?'
}

async function each (contenders: Contender[], what: string, fn: (c: Contender, rep: number) => Promise<Figures>, into: Record<string, Figures[]>): Promise<void> {
  for (let rep = 1; rep <= REPS; rep++) {
    for (const c of contenders) {
      try {
        const sampler = sampleRss(c.pids)
        const f = await fn(c, rep)
        f.sampledPeakRssMiB = sampler.stop()
        ;(into[c.name] ??= []).push(f)
        console.log(`  ${what} run ${rep} ${c.name.padEnd(12)} ${Object.entries(f).map(([k, v]) => `${k} ${fmt(v, v >= 100 ? 0 : 3)}`).join('  ')}`)
      } catch (err) {
        console.log(`  ${what} run ${rep} ${c.name}: FAILED ${String(err)}`)
      }
    }
  }
}

async function main (): Promise<void> {
  if (process.env.CROSSDOCK_NETNS !== '1') {
    console.log('peers: skipped — needs the private network namespace (port 443, registry-1.docker.io → 127.0.0.1); run it with `npm run bench` as root.')
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'cd-peers-'))
  const date = new Date().toISOString().slice(0, 10)
  const load0 = loadavg().map(l => l.toFixed(2)).join(' ')
  const r: Results = { herd: {}, warm1: {}, warm8: {}, tags: {}, rss: {}, hwm: {}, hosted: {}, mint: [], dockerPull: [], profiles: [], notes: [] }
  const stops: Array<() => Promise<void>> = []
  console.log(`peers: blob ${BLOB / MiB} MiB paced to ${RATE / 1e6} MB/s per response, ${REPS} runs per scenario, state in ${dir}`)
  const up = await startUpstream({ size: BLOB, rateBytesPerSec: RATE })
  stops.push(up.stop)
  try {
    const mint = Array.from({ length: REPS }, (_, i) => mintHosts(i + 1, MINT_HOSTS)).flat()
    const cd = await startCrossdock({ dir: join(dir, 'crossdock'), registries: mint })
    stops.push(cd.stop)
    const contenders: Contender[] = [direct(up), cd]
    for (const [name, start] of [['nginx', async () => await startNginx(join(dir, 'nginx'))], ['distribution', async () => await startDistribution(join(dir, 'distribution'), { port: 5001, proxy: true })]] as const) {
      try {
        const c = await start()
        stops.push(c.stop)
        contenders.push(c)
      } catch (err) { r.notes.push(`${name} did not start, left out: ${String(err).slice(0, 300)}`) }
    }
    for (const c of contenders) console.log(`  ${c.name}: ${c.door}`)

    const cached: Record<string, string> = {}
    if (ONLY.has('herd') || ONLY.has('warm')) {
      for (const n of HERDS) {
        console.log(`## 1. cold herd of ${n}`)
        const by = r.herd[String(n)] = {}
        await each(contenders, `herd ${n}`, async (c, rep) => {
          const { figures, digest } = await coldHerd(up, c, n, `herd-${n}-${rep}-${c.name}`)
          cached[c.name] ??= digest
          return figures
        }, by)
      }
    }
    if (ONLY.has('warm')) {
      console.log('## 2. warm hits')
      await each(contenders, 'warm 1', async c => await warmHits(up, c, cached[c.name], 1), r.warm1)
      await each(contenders, 'warm 8', async c => await warmHits(up, c, cached[c.name], 8), r.warm8)
    }
    if (ONLY.has('tags')) {
      console.log('## 3. tag resolution')
      await each(contenders, 'tags', async c => await tagResolution(up, c, TAG_REQUESTS), r.tags)
    }
    if (ONLY.has('rss')) {
      console.log('## 4. peak RSS, 8 slow clients (each run on a freshly started contender, cache kept)')
      for (const c of contenders) if (c.name !== 'direct') r.hwm[c.name] = hwmMiB(c.pids())
      console.log(`  lifetime peak (VmHWM) so far: ${Object.entries(r.hwm).map(([k, v]) => `${k} ${fmt(v, 0)} MiB`).join(', ')}`)
      await each(contenders.filter(c => c.name !== 'direct'), 'rss', async (c, rep) => {
        await c.restart?.()
        return await slowClientsRss(up, c, `rss-${rep}-${c.name}`, 8, 10e6, Math.min(RSS_READ, BLOB))
      }, r.rss)
    }
    let blob: GeneratedBlob | undefined
    if (ONLY.has('hosted')) {
      console.log(`## 5. hosted push and pull, ${HOSTED / MiB} MiB`)
      blob = new GeneratedBlob(HOSTED)
      const hosted: Contender[] = [{ ...cd, door: 'registry door, plain HTTP, hosted', endpoint: { mode: 'http', host: '127.0.0.1', port: cd.registryPort, prefix: '' } }]
      try {
        const dist = await startDistribution(join(dir, 'distribution-hosted'), { port: 5002, proxy: false })
        stops.push(dist.stop)
        hosted.push(dist)
      } catch (err) { r.notes.push(`distribution (hosted) did not start: ${String(err).slice(0, 300)}`) }
      const b = blob
      await each(hosted, 'hosted', async (c, rep) => await pushPull(c, b, `hosted-${rep}-${c.name}`), r.hosted)
    }
    if (ONLY.has('mint')) {
      console.log('## 6a. new-host mint latency')
      for (let rep = 1; rep <= REPS; rep++) {
        const f = await mintLatency(cd.proxyPort, cd.caFile, mintHosts(rep, MINT_HOSTS))
        r.mint.push(f)
        console.log(`  mint run ${rep} ${Object.entries(f).map(([k, v]) => `${k} ${fmt(v, 2)} ms`).join('  ')}`)
      }
    }
    if (ONLY.has('docker')) {
      console.log('## 6b. docker pull of a 5-layer image through the MITM door')
      if (spawnSync('sh', ['-c', 'command -v dockerd && command -v docker'], { stdio: 'ignore' }).status !== 0) {
        r.notes.push('6b skipped: dockerd/docker are not installed (npm test installs docker.io).')
      } else {
        const setup = await startBenchDockerd(join(dir, 'docker'), cd.proxyPort, cd.caFile)
        try {
          for (let rep = 1; rep <= REPS; rep++) {
            const f = await dockerPull(up, setup.dockerd, `library/five-${rep}`, '1', 5, LAYER, `five-${rep}`)
            r.dockerPull.push(f)
            console.log(`  docker pull run ${rep} ${Object.entries(f).map(([k, v]) => `${k} ${fmt(v, 2)}`).join('  ')}`)
          }
        } catch (err) {
          r.notes.push(`6b failed: ${String(err).slice(0, 400)}`)
        } finally { await setup.scope.close() }
      }
    }
    const load1 = loadavg().map(l => l.toFixed(2)).join(' ')
    for (const s of stops.splice(1).reverse()) await s()

    if (ONLY.has('profile')) {
      // Profiles in their own crossdock processes, so profiling never slows a compared figure.
      const profile = async (title: string, run: (c: Contender) => Promise<void>): Promise<void> => {
        const profDir = join(dir, `prof-${r.profiles.length}`)
        const c = await startCrossdock({ dir: join(dir, `crossdock-prof-${r.profiles.length}`), cpuProfDir: profDir })
        try { await run(c) } finally { await c.stop() }
        const file = readdirSync(profDir).find(f => f.endsWith('.cpuprofile'))
        if (file !== undefined) r.profiles.push({ title, summary: summarizeProfile(join(profDir, file)) })
      }
      console.log('## CPU profiles of crossdock')
      await profile('cold herd of 8, then warm reads (1 client, then 8 in parallel)', async c => {
        const { digest } = await coldHerd(up, c, 8, 'profile-herd')
        await warmHits(up, c, digest, 1)
        await warmHits(up, c, digest, 8)
      })
      await profile(`tag resolution (${TAG_REQUESTS} HEADs + ${TAG_REQUESTS} GETs)`, async c => { await tagResolution(up, c, TAG_REQUESTS) })
      await profile('slow clients: 8 clients at ~10 MB/s on a cold blob', async c => { await slowClientsRss(up, c, 'profile-rss', 8, 10e6, Math.min(RSS_READ, BLOB)) })
      const b = blob ?? new GeneratedBlob(HOSTED)
      await profile(`hosted push then pull of ${HOSTED / MiB} MiB (registry door)`, async c => {
        await pushPull({ ...c, endpoint: { mode: 'http', host: '127.0.0.1', port: 5000, prefix: '' } }, b, 'profile-hosted')
      })
    }

    const info = {
      date,
      setup: [
        ['machine', `${cpus().length} × ${cpus()[0]?.model ?? '?'}, shared; load average ${load0} at start, ${load1} after the compared scenarios`],
        ['node (crossdock)', process.version],
        ['nginx', version('nginx', ['-v']).replace(/^nginx version: /, '')],
        ['distribution', version('docker-registry', ['--version'])],
        ['blob', `${BLOB / MiB} MiB`],
        ['upstream pace', `${RATE / 1e6} MB/s per response (fake Docker Hub over TLS, own process)`],
        ['hosted blob', `${HOSTED / MiB} MiB`],
        ['runs per scenario', String(REPS)],
      ] as Array<[string, string]>,
      doors: contenders.map(c => [c.name, c.door] as [string, string]),
      tagRequests: TAG_REQUESTS,
      rssReadMiB: Math.min(RSS_READ, BLOB) / MiB,
    }
    mkdirSync(OUT, { recursive: true })
    const base = join(OUT, date)
    const png = writeChart(base, `crossdock vs nginx vs distribution — ${date} (medians of ${REPS} runs)`, chartPanels(r, info.rssReadMiB))
    if (png !== undefined) unlinkSync(`${base}.svg`)
    const md = markdown(info, r).replace('## Targets for crossdock', `${png !== undefined ? `![chart](${date}.png)\n\n` : ''}## Targets for crossdock`)
    writeFileSync(`${base}.md`, md)
    console.log('\n## targets')
    for (const t of targets(r)) console.log(`  ${t.met === true ? 'met ' : t.met === false ? 'MISS' : '  – '} ${t.what}: ${t.figure}`)
    for (const p of r.profiles) console.log(`  profile "${p.title}": ${p.summary.categories.slice(0, 5).map(c => `${c.category} ${fmt(c.share * 100, 0)}%`).join(', ')}`)
    console.log(`\nwrote ${base}.md${png !== undefined ? ` and ${png}` : ' (no PNG: rsvg-convert missing)'}`)
  } finally {
    for (const s of stops.reverse()) await s().catch(() => {})
    if (process.env.PEERS_KEEP === '1') console.log(`state kept in ${dir}`)
    else rmSync(dir, { recursive: true, force: true })
  }
}

await main()
