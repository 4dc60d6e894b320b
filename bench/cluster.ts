/**
 * Several replicas on S3 (issue 17): crossdock ×3 vs CNCF distribution 2.8 ×3, each set on one
 * bucket of the same Ceph RGW (memstore OSD: RAM, so the object store is not the disk's speed) and
 * behind the same nginx round robin (test/helpers/nginx-lb.ts: no buffering either way).
 *
 *   client ──► nginx ──► crossdock ×3 (STORAGE=s3, shared CA, redis)  ──► RGW bucket crossdock
 *   client ──► nginx ──► distribution ×3 (s3 driver, one http.secret) ──► RGW bucket distribution
 *   herd   ──► nginx ──► crossdock ×3 ─────── /v2/docker.io/library/herd ──► distribution upstream (TLS)
 *   herd   ──► nginx ──► distribution ×3 (proxy.remoteurl, on S3) ──────────► the same upstream
 *
 * Scenarios: push then pull one 1 GiB blob (POST, one streamed PATCH, PUT: round robin puts the
 * three on three replicas); a 12-layer image (12 × 32 MiB) pushed and pulled 3 layers at a time;
 * a cold herd of 16 clients pulling one image's layers through the pull-through path, with the
 * upstream's GETs counted per digest. Peak RSS per replica (VmHWM) and CPU seconds per scenario.
 * Writes bench/results/<date>-cluster.md. Needs root and the private namespace `npm run bench --
 * bench/cluster.ts` enters. Figures are printed, never asserted. CLUSTER_RUNS (1) repeats the
 * push/pull scenarios (interleaved); CLUSTER_BLOB_MIB (1024) sets the big blob.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { CreateBucketCommand } from '@aws-sdk/client-s3'
import { createScope, startDistribution, seedImage, waitFor, type Scope } from '../test/helpers/e2e/index.js'
import { startRgw } from '../test/helpers/rgw.js'
import { startCluster } from '../test/helpers/cluster.js'
import { startDistributionCluster } from './cluster/distribution-s3.js'
import { pushBlob, pullBlob, pullImage, pool, tailFor, type Target } from './cluster/traffic.js'
import { GeneratedBlob } from './peers/hosted.js'
import { cpuSeconds, hwmMiB } from './peers/procstat.js'
import { median } from './peers/stats.js'
import { ROOT } from './lib.js'

const ADDRESS = '127.0.0.47'
const MiB = 1024 * 1024
const RUNS = Number(process.env.CLUSTER_RUNS ?? 1)
const BIG = Number(process.env.CLUSTER_BLOB_MIB ?? 1024) * MiB
const LAYERS = 12
const LAYER = 32 * MiB
const HERD = 16

if (process.env.CROSSDOCK_NETNS !== '1') {
  console.log('cluster: skipped (needs root and the private network namespace of `npm run bench`)')
  process.exit(0)
}

const cleanups: Array<() => Promise<void>> = []
const scope: Scope = createScope({ teardown: (fn: () => Promise<void>) => { cleanups.push(fn) }, passing: () => true, comment: console.log, fail: console.log } as never, 'cluster-bench')
const log = (s: string): void => { console.log(`cluster: ${s}`) }
const loadStart = loadavg().map(l => l.toFixed(2)).join(' ')

interface Contender { name: string, target: Target, pids: () => number[] }
const asTarget = (address: string): Target => { const [host, port] = address.split(':'); return { host: host ?? '', port: Number(port) } }

try {
  let t0 = Date.now()
  const rgw = await startRgw(ADDRESS, join(scope.dir, 'rgw'), { memstoreBytes: 12 * 1024 * MiB })
  scope.defer('stop rgw', rgw.stop)
  log(`RGW up in ${rgw.startMs} ms`)
  const upstream = await startDistribution(scope, { host: ADDRESS, name: 'upstream' })
  const herdImage = await seedImage(scope, upstream, 'library/herd', '1', { seed: 'cluster-herd', randomBytes: 48 * MiB, randomLayers: 2 })
  const herdBytes = herdImage.layers.reduce((a, l) => a + l.size, 0) + herdImage.manifests[0]!.config.size

  t0 = Date.now()
  const cluster = await startCluster(scope, {
    address: ADDRESS,
    rgw,
    replicas: 3,
    redis: true,
    connectTo: { 'registry-1.docker.io:443': upstream.address },
    env: { LOG_LEVEL: 'info' },
  })
  const crossdockStartMs = Date.now() - t0
  const st = cluster.startTimes
  log(`crossdock cluster up in ${crossdockStartMs} ms (3 replicas ${st.replicasMs} ms, redis ${st.redisMs} ms, nginx ${st.lbMs} ms)`)
  await cluster.s3.send(new CreateBucketCommand({ Bucket: 'distribution' }))
  t0 = Date.now()
  const distHosted = await startDistributionCluster(scope, { address: ADDRESS, count: 3, rgw, bucket: 'distribution', root: '/hosted', name: 'dist-hosted' })
  const distStartMs = Date.now() - t0
  const distProxy = await startDistributionCluster(scope, { address: ADDRESS, count: 3, rgw, bucket: 'distribution', root: '/proxy', remoteUrl: upstream.url, name: 'dist-proxy' })

  const crossdockPids = (): number[] => cluster.replicas.map(r => r.pid()).filter((p): p is number => p !== undefined)
  const hosted: Contender[] = [
    { name: 'crossdock', target: asTarget(cluster.lb.address), pids: crossdockPids },
    { name: 'distribution', target: asTarget(distHosted.lb.address), pids: distHosted.pids },
  ]

  // 1. One big blob, pushed and pulled through nginx.
  const big = new GeneratedBlob(BIG)
  const bigRuns = new Map<string, Array<{ push: number, pull: number, pushCpu: number, pullCpu: number }>>()
  for (let run = 0; run < RUNS; run++) {
    for (const c of hosted) {
      const tail = tailFor(`${c.name}-big-${run}`)
      let cpu = cpuSeconds(c.pids())
      const push = await pushBlob(c.target, 'bench/big', big, tail)
      const pushCpu = cpuSeconds(c.pids()) - cpu
      cpu = cpuSeconds(c.pids())
      const pull = await pullBlob(c.target, 'bench/big', big.digest(tail), BIG)
      const pullCpu = cpuSeconds(c.pids()) - cpu
      bigRuns.set(c.name, [...(bigRuns.get(c.name) ?? []), { push, pull, pushCpu, pullCpu }])
      log(`${c.name} run ${run + 1}: ${BIG / MiB} MiB push ${push.toFixed(2)} s, pull ${pull.toFixed(2)} s`)
    }
  }
  const rssAfterBig = new Map(hosted.map(c => [c.name, c.pids().map(p => hwmMiB([p]))]))

  // 2. A 12-layer image, 3 layers at a time each way.
  const layer = new GeneratedBlob(LAYER)
  const imageRuns = new Map<string, Array<{ push: number, pull: number }>>()
  for (let run = 0; run < RUNS; run++) {
    for (const c of hosted) {
      const tails = Array.from({ length: LAYERS }, (_, i) => tailFor(`${c.name}-layer-${run}-${i}`))
      let t = performance.now()
      await pool(tails, 3, async tail => { await pushBlob(c.target, 'bench/image', layer, tail) })
      const push = (performance.now() - t) / 1000
      t = performance.now()
      await pool(tails, 3, async tail => { await pullBlob(c.target, 'bench/image', layer.digest(tail), LAYER) })
      const pull = (performance.now() - t) / 1000
      imageRuns.set(c.name, [...(imageRuns.get(c.name) ?? []), { push, pull }])
      log(`${c.name} run ${run + 1}: ${LAYERS} × ${LAYER / MiB} MiB push ${push.toFixed(2)} s, pull ${pull.toFixed(2)} s`)
    }
  }

  // 3. A cold herd over the pull-through path: upstream GETs per digest.
  const herd: Array<Contender & { repo: string }> = [
    { name: 'crossdock', target: asTarget(cluster.lb.address), pids: crossdockPids, repo: 'docker.io/library/herd' },
    { name: 'distribution', target: asTarget(distProxy.lb.address), pids: distProxy.pids, repo: 'library/herd' },
  ]
  const herdResults: Array<{ name: string, seconds: number, gets: Map<string, string>, manifestRequests: number, cpu: number }> = []
  for (const c of herd) {
    const from = upstream.accessLog.length
    const cpu0 = cpuSeconds(c.pids())
    const t = performance.now()
    const bytes = await Promise.all(Array.from({ length: HERD }, async () => await pullImage(c.target, c.repo, '1')))
    const seconds = (performance.now() - t) / 1000
    if (bytes.some(b => b < herdBytes)) throw new Error(`${c.name}: a herd client got fewer bytes than the image has`)
    // The upstream logs a request once it answered: wait until its log stops growing.
    let last = -1
    await waitFor('the upstream log to settle', () => { const n = upstream.accessLog.length; const settled = n === last; last = n; return settled }, { timeoutMs: 10_000, intervalMs: 500 })
    const seen = upstream.accessLog.slice(from)
    // Segmented downloads (UPSTREAM_SEGMENTS) fetch one blob over several range requests (206):
    // shown apart, as `whole + ranged`, so a fill in 4 ranges reads 0+4, not 4 fills.
    const gets = new Map<string, string>()
    for (const d of [herdImage.manifests[0]!.config.digest, ...herdImage.layers.map(l => l.digest)]) {
      const blobGets = seen.filter(e => e.method === 'GET' && e.path.endsWith(`/blobs/${d}`))
      const ranged = blobGets.filter(e => e.status === 206).length
      gets.set(d, ranged === 0 ? String(blobGets.length) : `${blobGets.length - ranged}+${ranged}r`)
    }
    const manifestRequests = seen.filter(e => e.path.includes('/manifests/')).length
    herdResults.push({ name: c.name, seconds, gets, manifestRequests, cpu: cpuSeconds(c.pids()) - cpu0 })
    log(`${c.name} herd of ${HERD}: ${seconds.toFixed(2)} s, upstream blob GETs ${[...gets.values()].join('/')}`)
  }

  // Report.
  const date = new Date().toISOString().slice(0, 10)
  const med = <T>(xs: T[] | undefined, f: (x: T) => number): number => median((xs ?? []).map(f))
  const mbps = (bytes: number, s: number): number => bytes / s / 1e6
  const lines: string[] = [
    `# Several replicas on S3: crossdock ×3 vs distribution 2.8 ×3 — ${date}`,
    '',
    'Generated by `npm run bench -- bench/cluster.ts` (issue 17). Both contenders: three processes on one bucket of the same Ceph RGW 16.2 (one memstore OSD, so RAM, not disk), behind the same nginx 1.22 round robin (`proxy_buffering off`, `proxy_request_buffering off`, HTTP/1.1 upstream, keep-alive). distribution 2.8.2 uses its s3 driver with `redirect.disable` (blobs stream through it as through crossdock) and one `http.secret`. Everything on loopback, 2 cores shared by the client, nginx, RGW and the six registries. Benchmarks assert nothing.',
    '',
    '| setting | value |',
    '|---|---:|',
    `| machine | ${cpus().length} × ${cpus()[0]?.model.trim() ?? '?'}, shared with other developers; load ${loadStart} at start, ${loadavg().map(l => l.toFixed(2)).join(' ')} at end |`,
    `| runs per push/pull scenario | ${RUNS} (median shown) |`,
    `| start: RGW (mon, OSD, radosgw, user) | ${(rgw.startMs / 1000).toFixed(1)} s |`,
    `| start: crossdock cluster (bucket, redis, shared CA, 3 replicas in parallel, nginx) | ${(crossdockStartMs / 1000).toFixed(1)} s (replicas ${(st.replicasMs / 1000).toFixed(1)} s) |`,
    `| start: distribution ×3 + nginx | ${(distStartMs / 1000).toFixed(1)} s |`,
    '',
    `## Hosted push and pull through nginx`,
    '',
    '| scenario | crossdock MB/s | distribution MB/s | crossdock / distribution | CPU s crossdock / distribution (all 3 replicas) |',
    '|---|---:|---:|---:|---:|',
  ]
  const cd = bigRuns.get('crossdock')
  const di = bigRuns.get('distribution')
  for (const [what, f, cpu] of [['push', (x: { push: number }) => x.push, (x: { pushCpu: number }) => x.pushCpu], ['pull', (x: { pull: number }) => x.pull, (x: { pullCpu: number }) => x.pullCpu]] as const) {
    const a = mbps(BIG, med(cd, f))
    const b = mbps(BIG, med(di, f))
    lines.push(`| ${BIG / MiB} MiB blob, ${what} | ${a.toFixed(0)} | ${b.toFixed(0)} | **${(a / b).toFixed(2)}×** | ${med(cd, cpu).toFixed(1)} / ${med(di, cpu).toFixed(1)} |`)
  }
  const ci = imageRuns.get('crossdock')
  const dimg = imageRuns.get('distribution')
  for (const [what, f] of [['push', (x: { push: number }) => x.push], ['pull', (x: { pull: number }) => x.pull]] as const) {
    const a = mbps(LAYERS * LAYER, med(ci, f))
    const b = mbps(LAYERS * LAYER, med(dimg, f))
    lines.push(`| ${LAYERS} × ${LAYER / MiB} MiB layers, ${what}, 3 at a time | ${a.toFixed(0)} | ${b.toFixed(0)} | **${(a / b).toFixed(2)}×** | |`)
  }
  lines.push('', `Peak RSS per replica after the ${BIG / MiB} MiB push and pull (VmHWM, MiB): crossdock ${rssAfterBig.get('crossdock')?.map(n => n.toFixed(0)).join(' / ')}, distribution ${rssAfterBig.get('distribution')?.map(n => n.toFixed(0)).join(' / ')}.`)
  lines.push('', `## Cold herd: ${HERD} clients over 3 replicas, one image through the pull-through path`, '',
    `The image: config + ${herdImage.layers.length} layers, ${(herdBytes / 1e6).toFixed(1)} MB, on a distribution 2.8 upstream (TLS). Each client GETs the manifest by tag, then config and layers 3 at a time; the ${HERD} clients start together. crossdock: registry door \`/v2/docker.io/library/herd\` (UPSTREAM_CONNECT_TO to the upstream, default PREFETCH_CONCURRENCY), its cache in the bucket (local tier per replica), fills elected in Redis. distribution: \`proxy.remoteurl\`, storage on the shared bucket.`, '',
    '| contender | wall s | upstream GETs per blob (config, layers…; `n+mr`: n whole, m ranged) | upstream manifest requests | CPU s (3 replicas) | peak RSS per replica MiB |',
    '|---|---:|---|---:|---:|---|')
  for (const r of herdResults) {
    const c = herd.find(h => h.name === r.name)!
    lines.push(`| ${r.name} | ${r.seconds.toFixed(2)} | ${[...r.gets.values()].join(', ')} | ${r.manifestRequests} | ${r.cpu.toFixed(1)} | ${c.pids().map(p => hwmMiB([p]).toFixed(0)).join(' / ')} |`)
  }
  lines.push('', 'The issue\'s target for crossdock is one upstream fetch per digest across the cluster (a Redis lock elects one replica to fill, the others stream its parts from the bucket); a fill with UPSTREAM_SEGMENTS shows as its range requests. distribution\'s count is what its pull-through did here: it does not make concurrent misses of one blob share a fetch, in one process or across them.', '')
  const out = process.env.CLUSTER_OUT ?? join(ROOT, 'bench/results', `${date}-cluster`)
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true })
  writeFileSync(`${out}.md`, lines.join('\n'))
  console.log(`\n${lines.join('\n')}\nwrote ${out}.md`)
} finally {
  for (const c of cleanups.reverse()) await c()
}
