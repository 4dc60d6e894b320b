// The Grafana dashboard and the Prometheus alert rules under deploy/ query only metric names that a
// running crossdock really exports: every expression's names are checked against a live /metrics.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { startApp } from '../../helpers/start-app.js'
import { exportedNames } from '../../helpers/metrics-text.js'
import { metricNames, ruleExpressions } from '../../helpers/promql-names.js'

const root = new URL('../../../', import.meta.url)
const dashboard = JSON.parse(readFileSync(new URL('deploy/grafana/crossdock.json', root), 'utf8'))
const rules = readFileSync(new URL('deploy/prometheus/alerts.yml', root), 'utf8')

/** Every `expr` and templating `query` anywhere in the dashboard JSON. */
function dashboardExpressions (node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const n of node) dashboardExpressions(n, out)
  else if (node !== null && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if ((k === 'expr' || k === 'query' || k === 'definition') && typeof v === 'string' && v !== 'prometheus') out.push(v)
      else dashboardExpressions(v, out)
    }
  }
  return out
}

t.test('the name extractor itself', async t => {
  t.same(metricNames('histogram_quantile(0.95, sum by (door, le) (rate(a_bucket{x=~"y|z"}[$__rate_interval]))) / on (instance) b > 0.1 * c_total offset 5m'), ['a_bucket', 'b', 'c_total'])
  t.same(metricNames('label_values(crossdock_build_info, instance)'), ['crossdock_build_info', 'instance'], 'label_values names a label too (checked apart)')
  t.same(ruleExpressions('  - expr: up == 0\n    for: 1m\n  - alert: X\n    expr: |\n      a\n        / b\n    for: 2m\n'), ['up == 0', '      a\n        / b'])
})

t.test('every metric name in the dashboard and the alert rules is exported by a live crossdock', async t => {
  const app = await startApp({ CACHE_MIN_FREE: '0' })
  t.teardown(app.stop)
  const res = await fetch(`http://127.0.0.1:${app.proxyPort}/metrics`)
  const exported = exportedNames(await res.text())
  t.ok(exported.has('crossdock_cache_requests_total') && exported.has('process_cpu_seconds_total'), 'the exposition was read')

  const panels = dashboardExpressions(dashboard.panels)
  const templating = dashboardExpressions(dashboard.templating)
  t.ok(panels.length >= 20, `${panels.length} panel queries`)
  const alerts = ruleExpressions(rules)
  t.equal(alerts.length, 6, 'six alert rules')
  const used = new Map<string, string>()
  for (const [where, exprs] of [['dashboard', panels], ['alerts.yml', alerts]] as const) {
    for (const e of exprs) for (const n of metricNames(e)) used.set(n, `${where}: ${e}`)
  }
  for (const e of templating) for (const n of metricNames(e).filter(n => n !== 'instance')) used.set(n, `templating: ${e}`)
  for (const [name, where] of used) t.ok(exported.has(name), `${name} is exported (${where.slice(0, 160)})`)
  t.ok(used.size >= 20, `${used.size} distinct names checked`)
  // Issue 18's panel list: each needs its metric.
  for (const n of ['crossdock_pull_through_bytes_total', 'crossdock_http_request_duration_seconds_bucket', 'crossdock_upstream_ratelimit_remaining',
    'crossdock_cache_max_size_bytes', 'crossdock_cache_evictions_total', 'crossdock_cache_fills_in_flight', 'crossdock_tunnels_total', 'process_resident_memory_bytes']) {
    t.ok(used.has(n), `the dashboard or the alerts use ${n}`)
  }
})
