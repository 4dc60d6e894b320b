/**
 * Reads a V8 CPU profile (`node --cpu-prof`) and says where the time went: self time by function
 * and by file/category. Categories are coarse on purpose (crossdock's own code, Node's streams, TLS,
 * HTTP, fs, GC, idle) so a closing note can say what would fix a loss.
 */
import { readFileSync } from 'node:fs'

interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
interface CpuProfile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

export interface ProfileSummary {
  totalMs: number
  /** Non-idle time, ms. */
  busyMs: number
  topFunctions: Array<{ name: string, where: string, ms: number, share: number }>
  categories: Array<{ category: string, ms: number, share: number }>
}

function category (fn: string, url: string): string {
  if (fn === '(idle)') return 'idle'
  if (fn === '(garbage collector)') return 'garbage collection'
  if (fn === '(program)') return 'native / V8 (program)'
  if (!url.includes('/node_modules/') && (url.includes('/dist/') || url.includes('/src/'))) {
    const m = /\/(?:dist|src)\/(.+?)\.js/.exec(url)
    return `crossdock ${m?.[1] ?? url}`
  }
  if (/internal\/modules\/|node:internal\/modules|^node:module/.test(url) || fn === 'compile' || fn === 'realpathSync') return 'module loading (start-up)'
  if (url.includes('node_modules/')) return `dependency ${/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? ''}`
  if (/_tls|tls_|node:tls|internal\/tls/.test(url)) return 'node tls'
  if (/_http|node:http|internal\/http/.test(url)) return 'node http'
  if (/streams|stream_base|node:stream/.test(url)) return 'node streams'
  if (/internal\/fs|node:fs/.test(url)) return 'node fs'
  if (/net\.js|node:net/.test(url)) return 'node net'
  if (url === '') return `native ${fn === '' ? '(anonymous)' : fn}`
  const m = /^node:(?:internal\/)?([a-z_]+)/.exec(url)
  return `node ${m?.[1] ?? url}`
}

export function summarizeProfile (file: string, top = 12): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map(p.nodes.map(n => [n.id, n]))
  const selfUs = new Map<number, number>()
  for (let i = 0; i < p.samples.length; i++) selfUs.set(p.samples[i], (selfUs.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0))
  const fns = new Map<string, { name: string, where: string, us: number }>()
  const cats = new Map<string, number>()
  let total = 0
  let idle = 0
  for (const [id, us] of selfUs) {
    const n = byId.get(id)
    if (n === undefined) continue
    const { functionName, url, lineNumber } = n.callFrame
    total += us
    if (functionName === '(idle)') { idle += us; continue }
    const where = url === '' ? '(native)' : `${url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/').replace(/^node:/, 'node:')}:${lineNumber + 1}`
    const key = `${functionName}@${where}`
    const f = fns.get(key) ?? { name: functionName === '' ? '(anonymous)' : functionName, where, us: 0 }
    f.us += us
    fns.set(key, f)
    const c = category(functionName, url)
    cats.set(c, (cats.get(c) ?? 0) + us)
  }
  const busy = total - idle
  return {
    totalMs: total / 1000,
    busyMs: busy / 1000,
    topFunctions: [...fns.values()].sort((a, b) => b.us - a.us).slice(0, top).map(f => ({ name: f.name, where: f.where, ms: f.us / 1000, share: f.us / busy })),
    categories: [...cats.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([c, us]) => ({ category: c, ms: us / 1000, share: us / busy })),
  }
}
