// A real Prometheus scrapes the built crossdock's /metrics on both doors (1 s interval) and a
// cache-hit counter is read back through Prometheus's own query API after a cached pull: the
// exposition is what Prometheus accepts, not only what our parser reads. Prometheus also loads
// deploy/prometheus/alerts.yml (its `for:` durations cut to 0s) and the rate-limit alert fires when
// an upstream's Docker Hub-style ratelimit-remaining header runs low.
import t from 'tap'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  requirePrivateNetns, createScope, startDistribution, seedImage, startCrossdock, startDaemon, waitFor, freePort,
  REPO_ROOT, type BuiltImage, type Crossdock, type Distribution, type Daemon,
} from '../helpers/e2e/index.js'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { proxiedRequest, sha256 } from '../helpers/proxy-client.js'

const HOST = '127.0.0.26' // this file's loopback address (test/e2e/README.md)
const HUB = 'registry-1.docker.io'
const GHCR = 'ghcr.io'
const RATE_LIMIT = 20

interface Sample { metric: Record<string, string>, value: [number, string] }

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'prom')
  let upstream!: Distribution
  let image!: BuiltImage
  let crossdock!: Crossdock
  let prometheus!: Daemon
  let promUrl!: string
  let limited!: FakeUpstream

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
    // A second upstream that answers with Docker Hub's rate-limit headers, one pull fewer each time.
    limited = new FakeUpstream()
    await limited.start()
    scope.defer('stop the rate-limited upstream', async () => { await limited.stop() })
    let pulls = 0
    limited.fault = (_req, res) => {
      pulls++
      res.setHeader('ratelimit-limit', `${RATE_LIMIT};w=21600`)
      res.setHeader('ratelimit-remaining', `${Math.max(0, RATE_LIMIT - pulls)};w=21600`)
      return false
    }
    crossdock = await startCrossdock(scope, { host: HOST, connectTo: { [`${HUB}:443`]: upstream.address, [`${GHCR}:443`]: `127.0.0.1:${limited.port}` } })

    const promPort = await freePort(HOST)
    promUrl = `http://${HOST}:${promPort}`
    const dir = scope.path('prometheus')
    mkdirSync(`${dir}/data`, { recursive: true })
    // Our alert rules as shipped, but firing at once instead of after minutes of a condition.
    const rules = readFileSync(join(REPO_ROOT, 'deploy/prometheus/alerts.yml'), 'utf8')
    writeFileSync(`${dir}/alerts.yml`, rules.replace(/^(\s+)for: \S+$/gm, '$1for: 0s'))
    // Plain YAML; JSON is YAML too, and needs no YAML writer.
    writeFileSync(`${dir}/prometheus.yml`, JSON.stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: [`${dir}/alerts.yml`],
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

  t.test('the shipped alert rules load, and the rate-limit alert fires when an upstream runs low', async t => {
    interface Rule { name: string, type: string, health: string }
    const groups = await waitFor('rules loaded', async () => {
      const body = await (await fetch(`${promUrl}/api/v1/rules`)).json() as { data: { groups: Array<{ name: string, rules: Rule[] }> } }
      return body.data.groups.length > 0 ? body.data.groups : undefined
    }, { timeoutMs: 10_000, intervalMs: 250 })
    const rules = groups.flatMap(g => g.rules)
    t.equal(rules.filter(r => r.type === 'alerting').length, 6, 'all six alerts loaded')
    const alertsFor = async (): Promise<Array<{ labels: Record<string, string>, state: string }>> =>
      ((await (await fetch(`${promUrl}/api/v1/alerts`)).json()) as { data: { alerts: Array<{ labels: Record<string, string>, state: string }> } }).data.alerts
        .filter(a => a.labels.alertname === 'CrossdockUpstreamRateLimitLow')
    t.same(await alertsFor(), [], 'quiet before any pull from the limited upstream')

    // Distinct blobs: each is a miss, one upstream request each (a hit would not reach the upstream).
    const ca = readFileSync(crossdock.caCert, 'utf8')
    for (let i = 0; i < RATE_LIMIT - 1; i++) {
      const digest = limited.addBlob(`layer ${i}`)
      const r = await proxiedRequest({ proxyPort: crossdock.proxyPort, proxyHost: HOST, host: GHCR, ca, path: `/v2/team/app/blobs/${digest}` })
      t.equal(r.status, 200)
    }
    const remaining = await waitFor('ratelimit_remaining scraped at 1', async () => {
      const r = await query(`crossdock_upstream_ratelimit_remaining{job="crossdock-proxy",host="${GHCR}"}`)
      return r[0]?.value[1] === '1' ? r[0] : undefined
    }, { timeoutMs: 20_000, intervalMs: 250 })
    t.equal(remaining.value[1], '1', `1 of ${RATE_LIMIT} pulls left`)
    const firing = await waitFor('the alert firing', async () => {
      const a = await alertsFor()
      return a.length === 2 && a.every(x => x.state === 'firing') ? a : undefined
    }, { timeoutMs: 20_000, intervalMs: 250 })
    t.same(firing.map(a => [a.labels.host, a.labels.severity, a.state]).sort(), [[GHCR, 'warning', 'firing'], [GHCR, 'warning', 'firing']], 'for the limited host, on both scrape jobs')
  })
}
