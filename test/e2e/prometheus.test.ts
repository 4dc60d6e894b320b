// A real Prometheus scrapes the built crossdock's /metrics on both doors (1 s interval) and a
// cache-hit counter is read back through Prometheus's own query API after a cached pull: the
// exposition is what Prometheus accepts, not only what our parser reads.
import t from 'tap'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import {
  requirePrivateNetns, createScope, startDistribution, seedImage, startCrossdock, startDaemon, waitFor, freePort,
  type BuiltImage, type Crossdock, type Distribution, type Daemon,
} from '../helpers/e2e/index.js'
import { proxiedRequest, sha256 } from '../helpers/proxy-client.js'

const HOST = '127.0.0.26' // this file's loopback address (test/e2e/README.md)
const HUB = 'registry-1.docker.io'

interface Sample { metric: Record<string, string>, value: [number, string] }

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'prom')
  let upstream!: Distribution
  let image!: BuiltImage
  let crossdock!: Crossdock
  let prometheus!: Daemon
  let promUrl!: string

  /** An instant query through Prometheus's HTTP API. */
  const query = async (q: string): Promise<Sample[]> => {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`)
    const body = await res.json() as { status: string, data: { result: Sample[] }, error?: string }
    if (body.status !== 'success') throw new Error(`query ${q}: ${body.error ?? res.status}`)
    return body.data.result
  }

  t.before(async () => {
    upstream = await startDistribution(scope, { host: HOST, name: 'upstream' })
    image = await seedImage(scope, upstream, 'library/tiny', '1', { randomBytes: 256 * 1024 })
    crossdock = await startCrossdock(scope, { host: HOST, connectTo: { [`${HUB}:443`]: upstream.address } })

    const promPort = await freePort(HOST)
    promUrl = `http://${HOST}:${promPort}`
    const dir = scope.path('prometheus')
    mkdirSync(`${dir}/data`, { recursive: true })
    // Plain YAML; JSON is YAML too, and needs no YAML writer.
    writeFileSync(`${dir}/prometheus.yml`, JSON.stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      scrape_configs: [
        { job_name: 'crossdock-proxy', scrape_interval: '1s', static_configs: [{ targets: [`${HOST}:${crossdock.proxyPort}`] }] },
        { job_name: 'crossdock-registry', scrape_interval: '1s', static_configs: [{ targets: [crossdock.registryAddress] }] },
      ],
    }, null, 2))
    prometheus = startDaemon('prometheus', 'prometheus', [
      `--config.file=${dir}/prometheus.yml`,
      `--storage.tsdb.path=${dir}/data`,
      `--web.listen-address=${HOST}:${promPort}`,
    ], { logFile: `${dir}/prometheus.log`, cwd: dir })
    scope.defer('stop prometheus', async () => { await prometheus.stop(5_000) })
    scope.attachLog('prometheus', () => prometheus.logTail(4000))
    await waitFor('prometheus /-/ready', async () => (await fetch(`${promUrl}/-/ready`)).status === 200, {
      timeoutMs: 30_000,
      abort: () => prometheus.hasExited() ? `exited:\n${prometheus.logTail()}` : undefined,
    })
  })

  t.test('Prometheus scrapes both doors', async t => {
    const up = await waitFor('both targets up', async () => {
      const r = await query('up')
      return r.length === 2 && r.every(s => s.value[1] === '1') ? r : undefined
    }, { timeoutMs: 20_000, intervalMs: 250 })
    t.same(up.map(s => s.metric.job).sort(), ['crossdock-proxy', 'crossdock-registry'])
  })

  t.test('a cached pull shows up as one MISS and one HIT in Prometheus', async t => {
    const layer = image.layers[1]
    for (let i = 0; i < 2; i++) {
      const r = await proxiedRequest({ proxyPort: crossdock.proxyPort, proxyHost: HOST, host: HUB, ca: readFileSync(crossdock.caCert, 'utf8'), path: `/v2/library/tiny/blobs/${layer.digest}` })
      t.equal(r.status, 200, `GET ${i + 1}`)
      t.equal(sha256(r.body), layer.digest, `GET ${i + 1}: whole blob`)
    }
    const sel = (status: string): string => `crossdock_cache_requests_total{job="crossdock-proxy",kind="blob",cache_status="${status}"}`
    const hit = await waitFor('the HIT scraped', async () => {
      const r = await query(sel('HIT'))
      return r.length === 1 && r[0].value[1] === '1' ? r[0] : undefined
    }, { timeoutMs: 20_000, intervalMs: 250 })
    t.equal(hit.value[1], '1', 'crossdock_cache_requests_total{cache_status="HIT"} = 1 through /api/v1/query')
    t.same((await query(sel('MISS'))).map(s => s.value[1]), ['1'], 'and one MISS')
    const bytes = await query('crossdock_pull_through_bytes_total{job="crossdock-proxy",kind="blob",source="cache"}')
    t.same(bytes.map(s => Number(s.value[1])), [layer.size], 'bytes served from the cache')
    const fromUpstream = await query(`sum(crossdock_upstream_requests_total{job="crossdock-proxy",host="${HUB}"})`)
    t.ok(Number(fromUpstream[0]?.value[1]) >= 1, 'upstream requests by host')
  })
}
