#!/usr/bin/env node
// Checks that src/ imports point one way (style.md "Shape") and that no module imports itself
// back through others. Prints every offending edge and cycle; exits 1 if there is any.
//
//   cli → commands → app → warm → bundle → {doors, client} → {proxy, mirror, registry} → {cache, upstream, storage}
//       → {tls, auth, observability, cluster, objects} → oci → util;   config, errors, log, version: leaves for all.
// oci/ is the vocabulary every side speaks (auth's Authorizer included), so it sits below its peers.
// client/ is an HTTP client of a registry door (the CLI's warm/export/import, and warm-up's own);
// warm/ and bundle/ serve the registry door's own API (POST /warm, /import/cache/…), injected there.
//
// Usage: node scripts/import-graph.mjs [srcDir]   (also run by test/unit/docs/import-graph.test.ts)
import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'

const LAYERS = [
  ['cli'], ['commands'], ['app'], ['warm'], ['bundle'], ['doors', 'client'], ['proxy', 'mirror', 'registry'],
  ['cache', 'upstream', 'storage'], ['tls', 'auth', 'observability', 'cluster', 'objects'], ['oci'], ['util'],
]
const LEAVES = new Set(['config', 'errors', 'log', 'log-pretty', 'version'])

/** The layer of a file: its top folder, `storage` for registry/storage, `app`/`cli` for the two roots. */
export function layerOf (file) {
  const parts = file.replace(/\.ts$/, '').split('/')
  if (parts[0] === 'registry' && parts[1] === 'storage') return 'storage'
  return parts[0]
}

function rank (layer) {
  if (LEAVES.has(layer)) return Infinity
  const i = LAYERS.findIndex(l => l.includes(layer))
  if (i === -1) throw new Error(`import-graph: ${layer} is in no layer; add it to LAYERS`)
  return i
}

export function readGraph (srcDir) {
  const graph = new Map()
  for (const f of readdirSync(srcDir, { recursive: true })) {
    if (!f.endsWith('.ts') || f.endsWith('.d.ts')) continue
    const text = readFileSync(join(srcDir, f), 'utf8')
    const deps = []
    // Type-only imports count too: they still couple the modules.
    for (const m of text.matchAll(/^(?:import|export)[^'"]*?from\s+'(\.{1,2}\/[^']+)'/gm)) {
      deps.push(relative(srcDir, resolve(srcDir, dirname(f), m[1])).replace(/\.js$/, '.ts'))
    }
    graph.set(f, deps)
  }
  return graph
}

export function check (srcDir) {
  const graph = readGraph(srcDir)
  const problems = []
  for (const [from, deps] of graph) {
    for (const to of deps) {
      const [a, b] = [layerOf(from), layerOf(to)]
      if (a === b) continue
      if (rank(a) >= rank(b) && !(LEAVES.has(a) && LEAVES.has(b))) problems.push(`${from} → ${to}: ${a} may not import ${b}`)
    }
  }
  // Cycles between files (Tarjan's strongly connected components).
  let index = 0
  const idx = new Map(); const low = new Map(); const stack = []; const on = new Set()
  const visit = (v) => {
    idx.set(v, index); low.set(v, index); index++; stack.push(v); on.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue
      if (!idx.has(w)) { visit(w); low.set(v, Math.min(low.get(v), low.get(w))) } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)))
    }
    if (low.get(v) === idx.get(v)) {
      const scc = []
      let w
      do { w = stack.pop(); on.delete(w); scc.push(w) } while (w !== v)
      if (scc.length > 1) problems.push(`cycle: ${scc.sort().join(' ↔ ')}`)
    }
  }
  for (const v of graph.keys()) if (!idx.has(v)) visit(v)
  return problems
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const problems = check(process.argv[2] ?? 'src')
  for (const p of problems) console.log(p)
  console.log(problems.length === 0 ? 'import-graph: dependencies point one way, no cycles' : `import-graph: ${problems.length} problem(s)`)
  process.exit(problems.length === 0 ? 0 : 1)
}
