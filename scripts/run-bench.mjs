#!/usr/bin/env node
// `npm run bench`: runs every benchmark in bench/ (each prints its figures; none asserts).
// Pass file names to run some: `npm run bench -- bench/proxy-throughput.ts`.
import { readdirSync } from 'node:fs'
import { spawnSync } from 'node:child_process'

const files = process.argv.slice(2).length > 0 ? process.argv.slice(2) : readdirSync('bench').filter(f => f.endsWith('.ts') && f !== 'lib.ts').map(f => `bench/${f}`)
let failed = 0
for (const f of files) {
  console.log(`\n# ${f}`)
  const r = spawnSync('npx', ['tsx', f], { stdio: 'inherit' })
  if (r.status !== 0) failed++
}
process.exit(failed === 0 ? 0 : 1)
