// The status page in a real browser: Debian's headless Chromium loads `/` from the built crossdock
// after it served misses and hits; the numbers the page rendered (its DOM, after its own script ran
// and refreshed) are the ones /status.json and /metrics report. Screenshots (desktop and phone
// width) go to test/artifacts/ for people to look at.
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  requirePrivateNetns, createScope, startDistribution, seedImage, startCrossdock, waitFor, REPO_ROOT,
  type BuiltImage, type Crossdock,
} from '../helpers/e2e/index.js'
import { proxiedRequest, sha256 } from '../helpers/proxy-client.js'
import { sample } from '../helpers/metrics-text.js'
import type { StatusReport } from '../../src/observability/status.js'

const HOST = '127.0.0.31' // this file's loopback address (test/e2e/README.md)
const HUB = 'registry-1.docker.io'
const ARTIFACTS = join(REPO_ROOT, 'test/artifacts')
const CHROMIUM = '/usr/bin/chromium'

/**
 * Chromium's own headless mode, flags for root in a netns with only loopback. The virtual time
 * budget lets the page's script fetch /status.json and refresh twice (every 5 s) before the DOM is
 * dumped or the screenshot taken, without the test waiting 10 real seconds.
 */
async function chromium (args: string[]): Promise<string> {
  const profile = mkdtempSync(join(tmpdir(), 'crossdock-chromium-'))
  try {
    const child = spawn(CHROMIUM, [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', `--user-data-dir=${profile}`, '--virtual-time-budget=12000', ...args,
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (b: Buffer) => { out += b.toString('utf8') })
    child.stderr.on('data', (b: Buffer) => { err += b.toString('utf8') })
    const code = await new Promise<number | null>((resolve, reject) => { child.on('error', reject); child.on('close', resolve) })
    if (code !== 0) throw new Error(`chromium exited ${code}: ${err.slice(-2000)}`)
    return out
  } finally {
    rmSync(profile, { recursive: true, force: true })
  }
}

/** The text of the element with `id` in a serialised DOM (the page only puts text in these). */
function textOf (dom: string, id: string): string | undefined {
  return new RegExp(`<[a-z0-9]+ [^>]*\\bid="${id}"[^>]*>([^<]*)<`).exec(dom)?.[1]
}
function bytesOf (dom: string, id: string): number | undefined {
  const m = new RegExp(`<[a-z0-9]+ [^>]*\\bid="${id}"[^>]*data-bytes="(\\d+)"`).exec(dom)
  return m === null ? undefined : Number(m[1])
}
/** The cells of the table row `data-key=key` inside table `id`, by data-col. */
function rowOf (dom: string, table: string, key: string): Record<string, { text: string, bytes?: number }> {
  const tableHtml = new RegExp(`<table id="${table}">([\\s\\S]*?)</table>`).exec(dom)?.[1] ?? ''
  const row = new RegExp(`<tr data-key="${key.replace(/\./g, '\\.')}">([\\s\\S]*?)</tr>`).exec(tableHtml)?.[1] ?? ''
  const cells: Record<string, { text: string, bytes?: number }> = {}
  for (const m of row.matchAll(/<td data-col="(\w+)"([^>]*)>([^<]*)</g)) {
    const b = /data-bytes="(\d+)"/.exec(m[2])
    cells[m[1]] = { text: m[3], bytes: b === null ? undefined : Number(b[1]) }
  }
  return cells
}
/** The page's own formatting (status-page.ts), to compare rounded text too. */
function formatBytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${i === 0 ? String(n) : n.toFixed(1)} ${units[i]}`
}

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'status-page')
  let image!: BuiltImage
  let crossdock!: Crossdock
  let base!: string

  t.before(async () => {
    const upstream = await startDistribution(scope, { host: HOST, name: 'upstream' })
    image = await seedImage(scope, upstream, 'library/tiny', '1', { randomBytes: 300 * 1024 })
    crossdock = await startCrossdock(scope, { host: HOST, connectTo: { [`${HUB}:443`]: upstream.address }, env: { CACHE_MAX_SIZE: '64m' } })
    base = `http://${HOST}:${crossdock.proxyPort}`
    mkdirSync(ARTIFACTS, { recursive: true })
  })

  t.test('the rendered page shows what /status.json and /metrics report', async t => {
    t.ok(statSync(CHROMIUM).isFile(), `${CHROMIUM} (Debian's chromium, installed by scripts/run-tests.mjs)`)
    const ca = readFileSync(crossdock.caCert, 'utf8')
    // Misses then hits: each layer twice, the config once.
    for (const layer of image.layers.slice(1)) {
      for (let i = 0; i < 2; i++) {
        const r = await proxiedRequest({ proxyPort: crossdock.proxyPort, proxyHost: HOST, host: HUB, ca, path: `/v2/library/tiny/blobs/${layer.digest}` })
        t.equal(sha256(r.body), layer.digest)
      }
    }
    const config = await proxiedRequest({ proxyPort: crossdock.proxyPort, proxyHost: HOST, host: HUB, ca, path: `/v2/library/tiny/blobs/${image.layers[0].digest}` })
    t.equal(config.status, 200)
    const pulls = 2 * (image.layers.length - 1) + 1
    // A request is counted when its response closes, just after the client read the last byte.
    const status = await waitFor('every pull counted', async () => {
      const s = await (await fetch(`${base}/status.json`)).json() as StatusReport
      return s.traffic.sinceStart.total.hits + s.traffic.sinceStart.total.misses === pulls ? s : undefined
    }, { timeoutMs: 10_000 })
    const metrics = await (await fetch(`${base}/metrics`)).text()
    const before = crossdock.logs.filter(l => l.path === '/status.json').length

    const dom = await chromium(['--dump-dom', `${base}/`])
    t.match(dom, /<body data-loaded="1">/, 'the page\'s script ran and rendered /status.json')
    const total = status.traffic.sinceStart.total
    t.equal(total.misses, image.layers.length, 'one miss per blob')
    t.equal(total.hits, image.layers.length - 1, 'one hit per layer')
    t.equal(textOf(dom, 'version'), status.version)
    t.equal(textOf(dom, 'hits-total'), String(total.hits))
    t.equal(textOf(dom, 'misses-total'), String(total.misses))
    t.equal(Number(textOf(dom, 'hits-total')), sample(metrics, 'crossdock_cache_requests_total', { registry: HUB, kind: 'blob', cache_status: 'HIT' }), 'hits = the HIT counter')
    t.equal(Number(textOf(dom, 'misses-total')), sample(metrics, 'crossdock_cache_requests_total', { registry: HUB, kind: 'blob', cache_status: 'MISS' }), 'misses = the MISS counter')
    t.equal(textOf(dom, 'ratio-total'), `${(total.hits / (total.hits + total.misses) * 100).toFixed(1)} %`)
    t.equal(textOf(dom, 'ratio-hour'), textOf(dom, 'ratio-total'), 'all within the last hour')
    t.equal(bytesOf(dom, 'bytes-cache-total'), sample(metrics, 'crossdock_pull_through_bytes_total', { registry: HUB, kind: 'blob', source: 'cache' }), 'bytes from the cache = the metric')
    t.equal(bytesOf(dom, 'bytes-upstream-total'), sample(metrics, 'crossdock_pull_through_bytes_total', { registry: HUB, kind: 'blob', source: 'upstream' }))
    t.equal(textOf(dom, 'bytes-cache-total'), formatBytes(total.bytesFromCache), 'and its rounded text')
    t.equal(bytesOf(dom, 'cache-used'), sample(metrics, 'crossdock_cache_size_bytes'))
    t.equal(bytesOf(dom, 'cache-used'), status.cache.usedBytes)
    t.equal(bytesOf(dom, 'cache-max'), 64 * 1024 * 1024, 'CACHE_MAX_SIZE')
    const hub = rowOf(dom, 'registries-start', HUB)
    t.same([hub.hits?.text, hub.misses?.text, hub.bytesFromCache?.bytes], [String(total.hits), String(total.misses), total.bytesFromCache], 'the registry row')
    const upstreamRow = rowOf(dom, 'upstreams', HUB)
    const upstreamRequests = [...metrics.matchAll(new RegExp(`^crossdock_upstream_requests_total\\{host="${HUB}",status="\\d+"\\} (\\d+)$`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0)
    t.equal(Number(upstreamRow.requests?.text), upstreamRequests, 'upstream requests = the counter')
    t.match(dom, `>${HUB}/library/tiny (${pulls})</li>`, 'the most requested repository')
    t.equal(textOf(dom, 'setup-cmd'), `curl -fsS http://${HOST}:${crossdock.proxyPort}/setup/systemd | bash`)
    t.match(dom, new RegExp(`<label for="cache-meter">`), 'the meter has a label')
    const refreshes = crossdock.logs.filter(l => l.path === '/status.json').length - before
    t.ok(refreshes >= 2, `the page refreshed itself (${refreshes} fetches of /status.json)`)

    for (const [name, size] of [['status-page.png', '1024,1200'], ['status-page-phone.png', '390,2400']]) {
      const file = join(ARTIFACTS, name)
      rmSync(file, { force: true })
      await chromium([`--window-size=${size}`, `--screenshot=${file}`, '--hide-scrollbars', `${base}/`])
      t.ok(statSync(file).size > 10_000, `screenshot ${file}`)
    }
  })
}
