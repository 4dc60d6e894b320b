// style.md "Shape": src/ imports point one way and have no cycles (scripts/import-graph.mjs).
import t from 'tap'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
// @ts-expect-error: a plain .mjs script without types
import { check } from '../../../scripts/import-graph.mjs'

t.test('src/: dependencies point one way, no cycles', async t => {
  t.same(check('src'), [])
})

t.test('the check sees a wrong-way import and a cycle', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'crossdock-graph-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  for (const d of ['cache', 'mirror', 'util']) await mkdir(join(dir, d))
  await writeFile(join(dir, 'cache/a.ts'), "import { m } from '../mirror/m.js'\n")
  await writeFile(join(dir, 'mirror/m.ts'), "import type { U } from '../util/u.js'\nexport const m = 1\n")
  await writeFile(join(dir, 'util/u.ts'), "export type { V } from './v.js'\n")
  await writeFile(join(dir, 'util/v.ts'), "import type { U } from './u.js'\n")
  t.same(check(dir), [
    'cache/a.ts → mirror/m.ts: cache may not import mirror',
    'cycle: util/u.ts ↔ util/v.ts',
  ])
})
