// deploy/prometheus/alerts.yml through Debian's promtool: the rules are valid, their unit tests
// (alerts.test.yml: series in, alerts out) pass, and those unit tests catch a broken threshold.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const DIR = fileURLToPath(new URL('../../../deploy/prometheus/', import.meta.url))

function promtool (args: string[], cwd = DIR): { status: number | null, out: string } {
  const r = spawnSync('promtool', args, { cwd, encoding: 'utf8' })
  if (r.error !== undefined) throw r.error
  return { status: r.status, out: `${r.stdout}${r.stderr}` }
}

t.test('promtool check rules: valid, six rules', async t => {
  const r = promtool(['check', 'rules', 'alerts.yml'])
  t.equal(r.status, 0, r.out)
  t.match(r.out, /SUCCESS: 6 rules found/)
})

t.test('promtool test rules: every alert fires where it should and stays quiet elsewhere', async t => {
  const r = promtool(['test', 'rules', 'alerts.test.yml'])
  t.equal(r.status, 0, r.out)
  t.match(r.out, /SUCCESS/)
  const tests = readFileSync(join(DIR, 'alerts.test.yml'), 'utf8')
  for (const alert of [...readFileSync(join(DIR, 'alerts.yml'), 'utf8').matchAll(/- alert: (\w+)/g)].map(m => m[1])) {
    t.ok(tests.includes(`alertname: ${alert}\n        exp_alerts: []`), `${alert}: a quiet case`)
    t.match(tests, new RegExp(`alertname: ${alert}\\n        exp_alerts:\\n          - exp_labels`), `${alert}: a firing case`)
  }
})

t.test('the unit tests catch a broken rule', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'crossdock-alerts-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  copyFileSync(join(DIR, 'alerts.test.yml'), join(dir, 'alerts.test.yml'))
  const rules = readFileSync(join(DIR, 'alerts.yml'), 'utf8')
  const broken = rules.replace('crossdock_upstream_ratelimit_remaining < 0.1 *', 'crossdock_upstream_ratelimit_remaining < 0.01 *')
  t.not(broken, rules, 'the threshold was there to break')
  writeFileSync(join(dir, 'alerts.yml'), broken)
  const r = promtool(['test', 'rules', 'alerts.test.yml'], dir)
  t.not(r.status, 0)
  t.match(r.out, /FAILED[\s\S]*CrossdockUpstreamRateLimitLow/)
})
