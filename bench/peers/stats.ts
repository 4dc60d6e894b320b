/** Small figures helpers shared by the peer benchmark: medians, percentiles, formatting. */

export function median (xs: number[]): number {
  return percentile(xs, 0.5)
}

/** Nearest-rank percentile (p in 0..1) of `xs`; NaN for an empty list. */
export function percentile (xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  if (p === 0.5 && s.length % 2 === 0) return (s[s.length / 2 - 1] + s[s.length / 2]) / 2
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]
}

export function max (xs: number[]): number {
  return xs.length === 0 ? Number.NaN : Math.max(...xs)
}

/** `n` with `digits` decimals, or "–" when it is not a finite number. */
export function fmt (n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '–'
}

/** "1.23×" ratio of a to b, or "–". */
export function ratio (a: number, b: number): string {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : '–'
}
