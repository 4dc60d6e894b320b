/**
 * The metric names a PromQL expression reads, for checking dashboards and alert rules against what
 * /metrics exports. Not a parser: strings, label matchers, ranges, grouping clauses and Grafana
 * variables are cut away, then every identifier that is not a function call, a keyword or an
 * aggregation is a metric name.
 */
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'atan2', 'inf', 'nan'])

export function metricNames (expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ') // strings
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // ranges and subqueries
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // grouping labels
    .replace(/\$\{?\w+\}?/g, ' ') // Grafana variables
  const names = new Set<string>()
  for (const m of stripped.matchAll(/(?<![a-zA-Z0-9_:.])[a-zA-Z_:][a-zA-Z0-9_:]*(?=\s*(\()?)/g)) {
    if (m[1] !== undefined) continue // a function or an aggregation: rate(, sum(, histogram_quantile(
    if (KEYWORDS.has(m[0].toLowerCase())) continue
    if (/^\d/.test(m[0])) continue
    names.add(m[0])
  }
  return [...names]
}

/** Every `expr:` of a Prometheus rule file (one-line values and `|` blocks), without a YAML parser. */
export function ruleExpressions (yaml: string): string[] {
  const out: string[] = []
  const lines = yaml.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)(?:- )?expr:\s*(.*)$/.exec(lines[i])
    if (m === null) continue
    if (m[2] !== '|' && m[2] !== '>' && m[2] !== '|-' && m[2] !== '>-') { out.push(m[2]); continue }
    const block: string[] = []
    while (i + 1 < lines.length && (lines[i + 1].trim() === '' || /^\s*/.exec(lines[i + 1])![0].length > m[1].length)) block.push(lines[++i])
    out.push(block.join('\n'))
  }
  return out
}
