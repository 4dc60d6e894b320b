/**
 * Reading Prometheus text exposition in tests: one sample's value, and every metric family name.
 */

/** The value of one sample (`name{labels}`), labels given in any order (a subset); undefined if absent. */
export function sample (text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(x => [x[1], x[2]]))
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3])
  }
  return undefined
}

/**
 * Every series name a query may use against this exposition: each `# TYPE` family, plus a
 * histogram's `_bucket`, `_sum` and `_count` (a family with no samples yet is still listed).
 */
export function exportedNames (text: string): Set<string> {
  const names = new Set<string>()
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(m[1])
    if (m[2] === 'histogram' || m[2] === 'summary') for (const s of ['_bucket', '_sum', '_count']) names.add(`${m[1]}${s}`)
  }
  return names
}
