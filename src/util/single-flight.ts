/**
 * One generic single-flight helper: concurrent `run(key, fn)` calls with the same key share one
 * execution of `fn` and its result (or error). The key is forgotten when the promise settles, so a
 * later call runs `fn` again; callers that want to remember results cache them themselves.
 * Used for blob fetches, tag resolution, leaf certificates and tokens.
 */
export class SingleFlight<T> {
  private readonly inflight = new Map<string, Promise<T>>()

  run (key: string, fn: () => Promise<T>): Promise<T> {
    const existing = this.inflight.get(key)
    if (existing !== undefined) return existing
    const p = (async () => {
      try {
        return await fn()
      } finally {
        this.inflight.delete(key)
      }
    })()
    this.inflight.set(key, p)
    return p
  }
}
