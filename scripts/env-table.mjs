#!/usr/bin/env node
// Prints the README's configuration table from the one config table (src/config/index.ts VARIABLES).
// Run after `npm run build`: node scripts/env-table.mjs
import { VARIABLES } from '../dist/config/index.js'

console.log('| Variable | Default | Meaning |')
console.log('|---|---|---|')
for (const v of VARIABLES) {
  const def = v.default === '' ? '' : v.default === ' ' ? '(a space)' : `\`${v.default.replace(/\|/g, '\\|')}\``
  console.log(`| \`${v.name}\` | ${def} | ${v.describe.replace(/\|/g, '\\|')} |`)
}
