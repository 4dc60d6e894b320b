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
