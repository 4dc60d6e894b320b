/**
 * WAN pulls (issue 20): real dockerd (MITM door) and ctr (registry door, mirror mode) pulling a
 * 10-layer image (~105 MB) from CNCF distribution 2.8 behind the user-space WAN relay
 * (bench/wan/relay.ts), direct vs through crossdock cold (fresh cache) vs warm, interleaved runs.
 *
 *   dockerd ──(own /etc/hosts: registry-1.docker.io → relay)─────────────────────► relay ─► distribution
 *   dockerd ──HTTPS_PROXY──► crossdock :3128 ──UPSTREAM_CONNECT_TO──► relay ─► distribution
 *   ctr ──hosts.toml (https, fixture CA)─────────────────────────────► relay ─► distribution
 *   ctr ──hosts.toml mirror──► crossdock :5000 (?ns=docker.io) ──────► relay ─► distribution
 *
 * Per run: wall time of the pull, TCP connections through the relay (each one TLS handshake),
 * crossdock CPU seconds (/proc) and its peak RSS (VmHWM). Then 400 tag resolutions of the cached
 * image (manifest HEADs on the registry door) and the new upstream connections they took.
 * Writes bench/results/<date>-wan.md and .png. Needs root and the private namespace
 * `npm run bench -- bench/wan-pull.ts` enters. Figures are printed, never asserted.
 * WAN_RUNS (3), WAN_SCENARIOS (comma list of ids), WAN_LAYER_MIB (10.5), WAN_CROSSDOCK_ENV (JSON) and
 * WAN_OUT (report path without extension) tune it. WAN_VARIANTS (JSON: name → crossdock env) compares
 * configurations within each run (direct, then cold and warm per variant, interleaved), e.g.
 * '{"segments off":{"UPSTREAM_SEGMENTS":"1"},"segments 4":{"UPSTREAM_SEGMENTS":"4"}}'.
 * WAN_CLIENTS (dockerd,ctr) picks the clients.
 * BENCH_WAN_ADDRESSES (upstream,crossdock; default 127.0.0.36,127.0.0.37) lets two people run it at once.
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { cpus } from 'node:os'
import { basename, join } from 'node:path'
import http from 'node:http'
import {
  createScope, startDistribution, seedImage, startDockerd, startContainerd, startCrossdock, FIXTURE, freePort,
  type Scope, type Crossdock, type Dockerd, type Containerd,
} from '../test/helpers/e2e/index.js'
import { startWan, type Wan } from './wan/relay.js'
import { cpuSeconds, hwmMiB } from './peers/procstat.js'
import { median } from './peers/stats.js'
import { ROOT } from './lib.js'
import { sample } from '../test/helpers/metrics-text.js'

const [UP, CD] = (process.env.BENCH_WAN_ADDRESSES ?? '127.0.0.36,127.0.0.37').split(',') // distribution and the relay; crossdock
const VARIANTS: Array<[string, Record<string, string>]> = process.env.WAN_VARIANTS !== undefined
  ? Object.entries(JSON.parse(process.env.WAN_VARIANTS) as Record<string, Record<string, string>>)
  : [['', {}]]
const HUB = 'registry-1.docker.io'
const RUNS = Number(process.env.WAN_RUNS ?? 3)
const LAYER = Math.round(Number(process.env.WAN_LAYER_MIB ?? 10.5) * 1024 * 1024)
const IMAGE = 'docker.io/library/wan:1'
const CLIENTS = (['dockerd', 'ctr'] as const).filter(c => process.env.WAN_CLIENTS === undefined || process.env.WAN_CLIENTS.split(',').includes(c))

interface Scenario { id: string, name: string, delayMs: number, linkBps: number, connBps: number, target?: string }
const SCENARIOS: Scenario[] = [
  { id: 'percon', name: '50 ms RTT, 50 Mbit/s per connection', delayMs: 25, linkBps: 0, connBps: 50e6, target: '≤ 0.6×' },
  { id: 'shared', name: '50 ms RTT, 200 Mbit/s shared', delayMs: 25, linkBps: 200e6, connBps: 0, target: '≤ 0.85×' },
  { id: 'fast', name: 'unthrottled (loopback, no delay)', delayMs: 0, linkBps: 0, connBps: 0, target: '≤ 1.05×' },
].filter(s => process.env.WAN_SCENARIOS === undefined || process.env.WAN_SCENARIOS.split(',').includes(s.id))

if (process.env.CROSSDOCK_NETNS !== '1') {
  console.log('wan-pull: skipped (needs root and the private network namespace of `npm run bench`)')
  process.exit(0)
}

const cleanups: Array<() => Promise<void>> = []
const scope: Scope = createScope({ teardown: (fn: () => Promise<void>) => { cleanups.push(fn) }, passing: () => true, comment: console.log, fail: console.log } as never, 'wan')

interface Figures { s: number, connections: number, cpu?: number, rssMiB?: number }
type Mode = 'direct' | 'cold' | 'warm'
/** A client, with the variant's name after a space when WAN_VARIANTS is set. */
type Client = string
const results = new Map<string, Figures[]>() // `${scenario}/${client}/${mode}`
const record = (sc: Scenario, c: Client, m: Mode, f: Figures): void => {
  const k = `${sc.id}/${c}/${m}`
  results.set(k, [...(results.get(k) ?? []), f])
}

/** Per scenario and client: the cold pulls' segment decisions (UPSTREAM_SEGMENT_RATE), `single/segmented`. */
const decisions = new Map<string, string[]>()
async function segmentDecisions (): Promise<string> {
  const text = await (await fetch(`http://${CD}:${registryPort}/metrics`)).text()
  const n = (decision: string): number => sample(text, 'crossdock_upstream_segment_decisions_total', { decision }) ?? 0
  return `${n('single')}/${n('segmented')}`
}

const loadAtStart = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
const upstream = await startDistribution(scope, { host: UP, name: 'upstream' })
const image = await seedImage(scope, upstream, 'library/wan', '1', { seed: 'wan', randomBytes: LAYER, randomLayers: 10 })
const totalBytes = image.layers.reduce((n, l) => n + l.size, 0)
console.log(`wan-pull: ${image.layers.length} layers, ${(totalBytes / 1e6).toFixed(1)} MB; ${RUNS} runs; load ${loadAtStart}`)

const caDir = scope.path('crossdock-ca')
const proxyPort = await freePort(CD)
const registryPort = await freePort(CD)
const hostsFile = scope.path('hosts')
writeFileSync(hostsFile, `127.0.0.1 localhost\n${UP} ${HUB} index.docker.io auth.docker.io\n`)

// A first crossdock makes the CA that the proxied dockerd trusts for every later crossdock.
let crossdock: Crossdock | undefined = await startCd('ca')
await crossdock.stop()
crossdock = undefined
const dockerDirect = await startDockerd(scope, { name: 'dockerd-direct', trust: [FIXTURE.testCa], binds: [[hostsFile, '/etc/hosts']] })
const dockerProxied = await startDockerd(scope, { name: 'dockerd-proxied', httpsProxy: `http://${CD}:${proxyPort}`, trust: [join(caDir, 'ca.crt')] })
const ctd = await startContainerd(scope)
const directHosts = ctd.writeHostsDir({ 'docker.io': `server = "https://${HUB}"\n[host."https://${UP}:443"]\n  capabilities = ["pull", "resolve"]\n  ca = "${FIXTURE.testCa}"\n` })
// writeHostsDir writes under one dir: the mirror config goes to a second containerd-style tree.
const mirrorHosts = scope.path('mirror-certs.d')
mkdirSync(join(mirrorHosts, 'docker.io'), { recursive: true })
writeFileSync(join(mirrorHosts, 'docker.io', 'hosts.toml'), `server = "https://${HUB}"\n[host."http://${CD}:${registryPort}"]\n  capabilities = ["pull", "resolve"]\n`)

async function startCd (name: string, variant: Record<string, string> = {}): Promise<Crossdock> {
  return await startCrossdock(scope, {
    host: CD, name: `cd-${name}`, proxyPort, registryPort,
    connectTo: { [`${HUB}:443`]: `${UP}:443` },
    env: { CA_DIR: caDir, LOG_LEVEL: 'warn', ...(process.env.WAN_CROSSDOCK_ENV !== undefined ? JSON.parse(process.env.WAN_CROSSDOCK_ENV) as Record<string, string> : {}), ...variant },
  })
}

async function pull (c: Client, via: 'direct' | 'crossdock'): Promise<void> {
  if (c === 'dockerd') {
    await (via === 'direct' ? dockerDirect : dockerProxied).dockerOk(['pull', '-q', IMAGE], { timeoutMs: 600_000 })
  } else {
    await ctd.ctrOk(['images', 'pull', '--hosts-dir', via === 'direct' ? directHosts : mirrorHosts, IMAGE], { timeoutMs: 600_000 })
  }
}

async function forget (c: Client): Promise<void> {
  if (c === 'dockerd') {
    for (const d of [dockerDirect, dockerProxied]) await d.docker(['rmi', '-f', IMAGE])
  } else {
    await ctd.ctr(['images', 'rm', IMAGE])
    await ctd.ctr(['content', 'prune', 'references'])
    // Blobs not yet referenced (a pull's leftovers) would make the next pull a local one.
    const left = (await ctd.ctr(['content', 'ls', '-q'])).stdout.split('\n').filter(Boolean)
    if (left.length > 0) await ctd.ctr(['content', 'rm', ...left])
  }
}

async function timed (wan: Wan, fn: () => Promise<void>, cd?: Crossdock): Promise<Figures> {
  const pid = cd?.pid()
  const cpu0 = pid !== undefined ? cpuSeconds([pid]) : 0
  const conn0 = wan.connections
  const t0 = performance.now()
  await fn()
  const s = (performance.now() - t0) / 1000
  return { s, connections: wan.connections - conn0, ...(pid !== undefined ? { cpu: cpuSeconds([pid]) - cpu0, rssMiB: hwmMiB([pid]) } : {}) }
}

async function tagResolutions (n: number): Promise<{ ms: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
  const t0 = performance.now()
  let next = 0
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < n) {
      next++
      await new Promise<void>((resolve, reject) => {
        http.request({ host: CD, port: registryPort, method: 'HEAD', path: '/v2/docker.io/library/wan/manifests/1', agent, headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } }, res => {
          res.resume().on('end', resolve)
          if (res.statusCode !== 200) reject(new Error(`tag HEAD answered ${res.statusCode}`))
        }).on('error', reject).end()
      })
    }
  }))
  agent.destroy()
  return { ms: performance.now() - t0 }
}

const tags: Array<{ scenario: string, newConnections: number, ms: number }> = []
let peakRss = 0
try {
  for (const sc of SCENARIOS) {
    const wan = await startWan({ host: UP, port: 443, target: { host: UP, port: Number(upstream.address.split(':')[1]) }, delayMs: sc.delayMs, linkBps: sc.linkBps, connBps: sc.connBps })
    console.log(`\n## ${sc.name}`)
    for (let run = 1; run <= RUNS; run++) {
      for (const client of CLIENTS) {
        await forget(client)
        const direct = await timed(wan, async () => await pull(client, 'direct'))
        for (const [variant, env] of VARIANTS) {
          const c = variant === '' ? client : `${client} ${variant}`
          record(sc, c, 'direct', direct)
          await forget(client)
          crossdock = await startCd(`${sc.id}-${run}-${c.replace(/\W+/g, '-')}`, env)
          const cold = await timed(wan, async () => await pull(client, 'crossdock'), crossdock)
          record(sc, c, 'cold', cold)
          const decided = await segmentDecisions()
          decisions.set(`${sc.id}/${c}`, [...(decisions.get(`${sc.id}/${c}`) ?? []), decided])
          // With LOG_LEVEL debug in WAN_CROSSDOCK_ENV: the prefetcher's per-host stream limits, in order.
          const limits = crossdock.logs.filter(l => l.msg === 'host stream limit').map(l => {
            const gain = (l.spans as { gain?: number } | undefined)?.gain
            return `${String(l.was)}→${String(l.limit)}${gain !== undefined ? `(gain ${gain.toFixed(2)})` : ''}`
          })
          await forget(client)
          const warm = await timed(wan, async () => await pull(client, 'crossdock'), crossdock)
          record(sc, c, 'warm', warm)
          peakRss = Math.max(peakRss, warm.rssMiB ?? 0)
          if (client === 'ctr' && run === RUNS && variant === VARIANTS[0][0]) {
            const before = wan.connections
            const r = await tagResolutions(400)
            tags.push({ scenario: sc.name, newConnections: wan.connections - before, ms: r.ms })
          }
          await crossdock.stop()
          crossdock = undefined
          console.log(`run ${run} ${c}: direct ${direct.s.toFixed(2)} s (${direct.connections} conns), cold ${cold.s.toFixed(2)} s = ${(cold.s / direct.s).toFixed(2)}× (${cold.connections} conns, segments single/segmented ${decided}, cpu ${cold.cpu?.toFixed(2)} s), warm ${warm.s.toFixed(2)} s = ${(warm.s / direct.s).toFixed(2)}×, rss ${warm.rssMiB?.toFixed(0)} MiB${limits.length > 0 ? `; host stream limits ${limits.join(' ')}` : ''}`)
        }
      }
    }
    await wan.close()
  }
} finally {
  if (crossdock !== undefined) await crossdock.stop().catch(() => {})
}
const loadAtEnd = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')

// Report
const clients: Client[] = CLIENTS.flatMap(c => VARIANTS.map(([v]) => v === '' ? c : `${c} ${v}`))
const fig = (sc: Scenario, c: Client, m: Mode): Figures[] => results.get(`${sc.id}/${c}/${m}`) ?? []
const med = (xs: Figures[], k: keyof Figures): number => median(xs.map(x => x[k] as number).filter(v => v !== undefined))
const lines: string[] = []
const date = new Date().toISOString().slice(0, 10)
lines.push(`# WAN pulls: direct vs crossdock cold vs warm — ${date}`, '',
  'Generated by `npm run bench -- bench/wan-pull.ts` (issue 20). Real dockerd (MITM door, HTTPS_PROXY) and ctr (registry door, hosts.toml mirror) pulling one image from CNCF distribution 2.8 behind a user-space WAN relay (bench/wan/relay.ts: delay per direction, shared link rate, per-connection cap). Runs interleaved (direct, cold, warm per client per run); figures are medians; ratios are against direct (per run in brackets). Crossdock: fresh cache per cold run, default configuration (PREFETCH_CONCURRENCY 8, PREFETCH_ADAPTIVE on, HTTP/1.1 upstream). Benchmarks assert nothing.', '',
  '| setting | value |', '|---|---:|',
  `| machine | ${cpus().length} × ${cpus()[0]?.model ?? '?'}, shared with other developers; load ${loadAtStart} at start, ${loadAtEnd} at end |`,
  `| image | ${image.layers.length} layers, ${(totalBytes / 1e6).toFixed(1)} MB (busybox + 10 random) |`,
  `| runs | ${RUNS} |`, '')
for (const sc of SCENARIOS) {
  lines.push(`## ${sc.name}`, '', '| client | direct s | cold s | cold / direct | warm s | warm / direct | upstream conns direct / cold / warm | crossdock CPU s cold / warm | peak RSS MiB |', '|---|---:|---:|---|---:|---|---:|---:|---:|')
  for (const c of clients) {
    const d = fig(sc, c, 'direct'); const co = fig(sc, c, 'cold'); const w = fig(sc, c, 'warm')
    const per = (xs: Figures[]): string => xs.map((x, i) => (x.s / d[i].s).toFixed(2)).join(', ')
    lines.push(`| ${c} | ${med(d, 's').toFixed(2)} | ${med(co, 's').toFixed(2)} | **${(med(co, 's') / med(d, 's')).toFixed(2)}×** (${per(co)}) | ${med(w, 's').toFixed(2)} | ${(med(w, 's') / med(d, 's')).toFixed(2)}× (${per(w)}) | ${med(d, 'connections')} / ${med(co, 'connections')} / ${med(w, 'connections')} | ${med(co, 'cpu').toFixed(2)} / ${med(w, 'cpu').toFixed(2)} | ${Math.max(...w.map(x => x.rssMiB ?? 0)).toFixed(0)} |`)
  }
  lines.push('', `Target (cold / direct): ${sc.target ?? '—'}`, '')
  const decided = clients.filter(c => decisions.get(`${sc.id}/${c}`)?.some(d => d !== '0/0') === true)
  if (decided.length > 0) lines.push(`Segment decisions per cold pull (single/segmented, UPSTREAM_SEGMENT_RATE): ${decided.map(c => `${c} ${decisions.get(`${sc.id}/${c}`)!.join(', ')}`).join('; ')}`, '')
}
lines.push('## Tag resolutions', '', '| scenario | 400 tag HEADs (registry door, 8 parallel) | new upstream TCP+TLS connections (target ≤ 2) |', '|---|---:|---:|')
for (const tr of tags) lines.push(`| ${tr.scenario} | ${(tr.ms / 1000).toFixed(2)} s | ${tr.newConnections} |`)
lines.push('', `Peak RSS of crossdock across every scenario (VmHWM, target ≤ 200 MiB): ${peakRss.toFixed(0)} MiB`, '')
const base = process.env.WAN_OUT ?? join(ROOT, 'bench/results', `${date}-wan`)
mkdirSync(join(ROOT, 'bench/results'), { recursive: true })
const { writeChart } = await import('./peers/report.js')
const panels = SCENARIOS.flatMap(sc => clients.map(c => ({
  title: `${sc.id}: ${c}`,
  unit: 's',
  better: 'lower' as const,
  values: (['direct', 'cold', 'warm'] as Mode[]).map(m => [m, med(fig(sc, c, m), 's')] as [string, number]).filter(([, v]) => Number.isFinite(v)),
})))
const png = writeChart(base, 'WAN pulls: direct vs crossdock (cold, warm), seconds', panels)
if (png !== undefined) lines.splice(4, 0, `![chart](${basename(base)}.png)`, '')
writeFileSync(`${base}.md`, lines.join('\n'))
console.log(`\n${lines.join('\n')}\nwrote ${base}.md`)
for (const c of cleanups.reverse()) await c()
