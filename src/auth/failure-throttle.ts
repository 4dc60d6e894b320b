/**
 * Per-source-address throttle for failed client logins. After `maxFailures` failures from one
 * address within `windowMs`, that address is blocked for `cooldownMs`: its credentialed attempts
 * are refused at once, without running bcrypt. This bounds both password guessing and the CPU an
 * attacker can burn (one bcrypt compare costs milliseconds of CPU).
 *
 * Attempts refused while blocked do not extend the block, so a misconfigured client that keeps
 * retrying gets a predictable retry time. Memory is bounded: at most `maxTracked` addresses are
 * remembered (least recently failed dropped first).
 */
import { LRUCache } from 'lru-cache'

export interface FailureThrottleOptions {
  maxFailures?: number
  windowMs?: number
  cooldownMs?: number
  maxTracked?: number
  now?: () => number
}

interface Entry { failures: number[], blockedUntil: number }

export class FailureThrottle {
  private readonly entries: LRUCache<string, Entry>
  private readonly maxFailures: number
  private readonly windowMs: number
  private readonly cooldownMs: number
  private readonly now: () => number

  constructor (opts: FailureThrottleOptions = {}) {
    this.maxFailures = opts.maxFailures ?? 10
    this.windowMs = opts.windowMs ?? 60_000
    this.cooldownMs = opts.cooldownMs ?? 60_000
    this.now = opts.now ?? Date.now
    this.entries = new LRUCache({ max: opts.maxTracked ?? 10_000 })
  }

  /** Milliseconds until `remote` may try again; 0 when it is not blocked. */
  blockedFor (remote: string): number {
    const e = this.entries.peek(remote)
    if (e === undefined) return 0
    return Math.max(0, e.blockedUntil - this.now())
  }

  /** Records one failure; returns true when this failure started a block. */
  recordFailure (remote: string): boolean {
    const t = this.now()
    const e = this.entries.get(remote) ?? { failures: [], blockedUntil: 0 }
    if (e.blockedUntil > t) return false
    e.failures = e.failures.filter(at => t - at < this.windowMs)
    e.failures.push(t)
    let started = false
    if (e.failures.length >= this.maxFailures) {
      e.blockedUntil = t + this.cooldownMs
      e.failures = []
      started = true
    }
    this.entries.set(remote, e)
    return started
  }
}

/** `::ffff:10.0.0.1` and `10.0.0.1` are the same client (dual-stack sockets report the former). */
export function normalizeRemote (remote: string | undefined): string {
  if (remote === undefined || remote === '') return 'unknown'
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote
}
