// The README stays true to the code: every configuration variable is in its table, with its default.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { VARIABLES } from '../../../src/config/index.js'

const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8')

t.test('every variable is documented with its default', async t => {
  for (const v of VARIABLES) {
    const row = readme.split('\n').find(l => l.startsWith(`| \`${v.name}\` |`))
    t.ok(row, `${v.name} has a row`)
    if (v.default !== '' && v.default !== ' ') t.ok(row?.includes(`\`${v.default.replace(/\|/g, '\\|')}\``), `${v.name} default ${v.default}`)
  }
})

t.test('the two commands are there', async t => {
  t.match(readme, 'npm ci && npm start')
  t.match(readme, 'npm test')
})

t.test('every metric crossdock exports is in the metrics table, and the Monitoring section\'s files exist', async t => {
  const { createMetrics } = await import('../../../src/observability/metrics.js')
  const { existsSync } = await import('node:fs')
  const m = createMetrics({ processMetrics: false })
  const names = [...(await m.render()).body.matchAll(/^# TYPE (\S+) /gm)].map(x => x[1])
  t.ok(names.length >= 25, `${names.length} families`)
  for (const n of names) t.ok(readme.includes(`| \`${n}\` |`), `${n} has a row`)
  t.notMatch(readme, /crossdock_process_|crossdock_nodejs_/, 'process metrics under their standard names')
  for (const f of [...readme.matchAll(/\]\(((?:docs|deploy)\/[^)]+)\)/g)].map(x => x[1])) {
    t.ok(existsSync(new URL(`../../../${f}`, import.meta.url)), `${f} exists`)
  }
})
