/**
 * When may we ask again after a 429: `Retry-After` (RFC 9110: seconds or an HTTP date), else the
 * IETF draft's `RateLimit-Reset` (seconds), else `X-RateLimit-Reset` (epoch seconds, GitHub/ghcr).
 * Docker Hub's `ratelimit-remaining: 0;w=21600` names only its window, not when it resets.
 */
type Headers = Record<string, string | string[] | undefined>

export function retryAfterMs (headers: Headers, now = Date.now()): number | undefined {
  const get = (n: string): string | undefined => { const v = headers[n]; return (Array.isArray(v) ? v[0] : v)?.trim() }
  const retryAfter = get('retry-after')
  if (retryAfter !== undefined && retryAfter !== '') {
    if (/^\d+$/.test(retryAfter)) return Number(retryAfter) * 1000
    const at = Date.parse(retryAfter)
    if (!Number.isNaN(at)) return Math.max(0, at - now)
  }
  const reset = get('ratelimit-reset')
  if (reset !== undefined && /^\d+$/.test(reset)) return Number(reset) * 1000
  const epoch = get('x-ratelimit-reset')
  if (epoch !== undefined && /^\d+$/.test(epoch)) return Math.max(0, Number(epoch) * 1000 - now)
  return undefined
}
