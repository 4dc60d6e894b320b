/**
 * Who fills a blob cluster-wide: the seam between the bucket cache (which writes and reads the
 * fill's parts) and the coordination behind it (a Redis lock when REDIS_URL is set).
 *
 *   elect(key) ─┬─ leader   (lease: fencing token, held(), release())   fetch upstream, write parts
 *               └─ follower (the leader's token)                       read the leader's parts
 *
 * Without coordination (no REDIS_URL, or Redis unreachable) every replica leads: duplicate upstream
 * fetches are allowed, nothing else changes — losing Redis costs only speed. `elect` never throws.
 *
 * The fencing token names where a leader writes (its parts live under its token), so a leader whose
 * lease expired while it was stalled cannot overwrite the parts of the replica that took over.
 */

export interface FillLease {
  /** Fencing token: unique cluster-wide per election, increasing while Redis lives. */
  readonly token: string
  /** False once the lease is known lost (expired, taken over, or Redis gone while it was held). */
  held: () => boolean
  /** Gives the lock up if still ours (compare-and-delete); never throws. */
  release: () => Promise<void>
}

export type FillElection =
  | { role: 'leader', lease: FillLease }
  | { role: 'follower', token: string }

export interface FillLock {
  /** Elects one filler of `key` cluster-wide (see the header). Never throws. */
  elect: (key: string) => Promise<FillElection>
  /**
   * The token of whoever holds `key` now: a string, `null` when nobody does (the leader finished,
   * gave up, or died and its lease expired), `undefined` when this replica cannot tell (no
   * coordination right now). Never throws.
   */
  holder: (key: string) => Promise<string | null | undefined>
  /** Whether elections are coordinated cluster-wide right now (status page, /readyz detail). */
  coordinated: () => boolean
  close: () => Promise<void>
}

/** No coordination: every replica leads, with a token nobody else has. */
export class LocalFillLock implements FillLock {
  private next = 0

  async elect (): Promise<FillElection> {
    const token = `local-${process.pid}-${Date.now().toString(36)}-${++this.next}`
    let held = true
    return { role: 'leader', lease: { token, held: () => held, release: async () => { held = false } } }
  }

  async holder (): Promise<undefined> { return undefined }
  coordinated (): boolean { return false }
  async close (): Promise<void> {}
}
