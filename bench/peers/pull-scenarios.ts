/**
 * Scenarios 1–4, run against every pull-through contender (and the upstream itself):
 *   1. cold herd: N clients at once on a never-fetched blob
 *   2. warm hits: 1 client, then 8 in parallel, on a blob the contender holds
 *   3. tag resolution: sequential HEADs then GETs of a cached image's tag
 *   4. peak RSS while 8 slow clients (~10 MB/s) read a cold blob
 * Each returns one record of figures per run; the orchestrator repeats runs and takes medians.
 */
import { agentFor, MANIFEST_ACCEPT, request, type Response } from './client.js'
import type { Contender } from './contenders.js'
import { cpuSeconds, sampleRss } from './procstat.js'
import { max, median, percentile } from './stats.js'
import { delta, type Upstream, type UpstreamStats } from './upstream.js'

export type Figures = Record<string, number>
const MB = 1e6
const GiB = 1024 ** 3

export const blobPath = (c: Contender, digest: string): string =>
  `/v2/library/bench${c.name === 'direct' ? '-unthrottled' : ''}/blobs/${digest}`

/** Waits until the upstream has written nothing for ~1 s (fills finishing in the background). */
export async function waitQuiet (up: Upstream, timeoutMs = 120_000): Promise<UpstreamStats> {
  const total = (s: UpstreamStats): number => Object.values(s).reduce((n, v) => n + v.bytes + v.count, 0)
  const deadline = Date.now() + timeoutMs
  let last = await up.stats()
  let still = 0
  while (Date.now() < deadline && still < 3) {
    await new Promise(resolve => setTimeout(resolve, 350))
    const now = await up.stats()
    still = total(now) === total(last) ? still + 1 : 0
    last = now
  }
  return last
}

const isBlob = (digest: string) => (key: string): boolean => key.endsWith(`/blobs/${digest}`)

/** 1. `n` clients GET one cold blob at once. Leaves the blob cached; returns its digest too. */
export async function coldHerd (up: Upstream, c: Contender, n: number, key: string): Promise<{ figures: Figures, digest: string }> {
  const digest = await up.variant(key)
  // The direct contender is throttled like the others here: it *is* the upstream.
  const path = `/v2/library/bench/blobs/${digest}`
  const before = await up.stats()
  const cpu0 = cpuSeconds(c.pids())
  const started = performance.now()
  const results = await Promise.all(Array.from({ length: n }, async () => await request(c.endpoint, { path }).catch(err => err as Error)))
  const wall = (performance.now() - started) / 1000
  const cpu = cpuSeconds(c.pids()) - cpu0
  const after = await waitQuiet(up)
  const ok = results.filter((r): r is Response => !(r instanceof Error) && r.status === 200 && r.bytes === up.size)
  const failed = results.length - ok.length
  if (failed > 0) console.log(`    ${c.name}: ${failed} of ${n} clients failed or got a short body: ${results.filter(r => r instanceof Error || r.status !== 200 || r.bytes !== up.size).map(r => r instanceof Error ? r.message : `${r.status} ${r.bytes} bytes`).slice(0, 3).join('; ')}`)
  const d = delta(before, after, isBlob(digest))
  const ttfb = ok.map(r => r.ttfbSeconds)
  const total = ok.map(r => r.seconds)
  return {
    digest,
    figures: {
      upstreamGets: d.byMethod.GET ?? 0,
      upstreamHeads: d.byMethod.HEAD ?? 0,
      upstreamMiB: d.bytes / 1024 ** 2,
      upstreamTls: delta(before, after, k => k === 'TLS connections').byMethod.TLS ?? 0,
      ttfbP50: median(ttfb),
      ttfbMax: max(ttfb),
      ttfbMin: Math.min(...ttfb),
      totalP50: median(total),
      totalMax: max(total),
      wall,
      failed,
      cpuSeconds: cpu,
    },
  }
}

/** 2. `parallel` clients each read the whole (cached) blob: aggregate MB/s and CPU s/GiB. */
export async function warmHits (up: Upstream, c: Contender, digest: string, parallel: number): Promise<Figures> {
  const path = blobPath(c, digest)
  const before = await up.stats()
  const cpu0 = cpuSeconds(c.pids())
  const started = performance.now()
  const results = await Promise.all(Array.from({ length: parallel }, async () => await request(c.endpoint, { path })))
  const wall = (performance.now() - started) / 1000
  const cpu = cpuSeconds(c.pids()) - cpu0
  const bytes = results.reduce((n, r) => n + r.bytes, 0)
  const d = delta(before, await up.stats(), isBlob(digest))
  const short = results.filter(r => r.status !== 200 || r.bytes !== up.size).length
  if (short > 0) console.log(`    ${c.name}: ${short} warm reads were not a full 200`)
  return { mbps: bytes / wall / MB, cpuPerGiB: cpu / (bytes / GiB), wall, upstreamGets: c.name === 'direct' ? 0 : d.byMethod.GET ?? 0 }
}

/** 3. `count` sequential HEADs, then `count` GETs, of `library/bench:latest` over one keep-alive connection. */
export async function tagResolution (up: Upstream, c: Contender, count: number): Promise<Figures> {
  const agent = agentFor(c.endpoint, true)
  const path = '/v2/library/bench/manifests/latest'
  const headers = { accept: MANIFEST_ACCEPT }
  try {
    // Make sure the image is cached (manifest by tag, and by digest as docker then asks).
    const first = await request(c.endpoint, { path, headers, agent })
    const digest = String(first.headers['docker-content-digest'] ?? '')
    if (digest !== '') await request(c.endpoint, { path: `/v2/library/bench/manifests/${digest}`, headers, agent })
    await waitQuiet(up, 10_000)
    const before = await up.stats()
    const time = async (method: 'HEAD' | 'GET'): Promise<number[]> => {
      const ms: number[] = []
      for (let i = 0; i < count; i++) {
        const r = await request(c.endpoint, { method, path, headers, agent })
        if (r.status !== 200) throw new Error(`${c.name}: ${method} ${path} → ${r.status}`)
        ms.push(r.seconds * 1000)
      }
      return ms
    }
    const head = await time('HEAD')
    const get = await time('GET')
    const d = delta(before, await up.stats(), () => true)
    return {
      headP50: median(head),
      headP99: percentile(head, 0.99),
      getP50: median(get),
      getP99: percentile(get, 0.99),
      upstreamHead: d.byMethod.HEAD ?? 0,
      upstreamGet: d.byMethod.GET ?? 0,
      upstreamTls: d.byMethod.TLS ?? 0,
    }
  } finally {
    agent.destroy()
  }
}

/**
 * 4. 8 clients read a cold blob at `rate` bytes/s each, `readBytes` each, then hang up; RSS of the
 * contender is sampled until the upstream goes quiet (fills the contender keeps going included).
 */
export async function slowClientsRss (up: Upstream, c: Contender, key: string, clients: number, rate: number, readBytes: number): Promise<Figures> {
  const digest = await up.variant(key)
  const path = `/v2/library/bench/blobs/${digest}`
  const sampler = sampleRss(c.pids)
  const base = sampler.stop()
  const rss = sampleRss(c.pids)
  const results = await Promise.all(Array.from({ length: clients }, async () =>
    await request(c.endpoint, { path, rateBytesPerSec: rate, maxBytes: readBytes }).catch(err => err as Error)))
  await waitQuiet(up)
  const peak = rss.stop()
  const rates = results.filter((r): r is Response => !(r instanceof Error)).map(r => r.bytes / r.seconds / MB)
  return { peakRssMiB: peak, baseRssMiB: base, clientMBps: median(rates), failed: results.filter(r => r instanceof Error).length }
}
