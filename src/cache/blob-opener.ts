/**
 * The cache's own single-flight for blob misses: whichever door asks, one upstream fetch per
 * digest, and every other asker joins the fill it became.
 *
 *   openOrFill(digest, fetch)
 *     ├─ fill in flight ───────────────────────────────► { fill, leader: false }     (join)
 *     └─ first asker runs, the others wait on it:
 *          cached meanwhile ─────────────────────────► { cached }                   (look up again)
 *          fill started meanwhile ───────────────────► { fill, leader: false }
 *          fetch() → cacheable 200 → beginBlobFill ──► { fill, leader: true|false }
 *                  → no room / too big (bypass) ─────► leader: { bypass, answer, reason }
 *                  → anything else ──────────────────► leader: { answer }
 *                                                      others: { unshared }  (the answer's body
 *                                                      can be read once: they ask on their own)
 *
 * Before, each door had its own single-flight and both could fetch the same digest at once; the
 * second then threw its body away when it found the first one's fill.
 */
import { SingleFlight } from '../util/single-flight.js'
import type { BlobFill } from './blob-fill.js'
import type { Digest } from '../oci/digest.js'
import type { CacheBlobStore, FetchedBlob } from './stores.js'

export type { FetchedBlob } from './stores.js'

/** What one flight hands an asker; the blob store turns it into a BlobSource (opened, or a share taken). */
export type FlightResult<A> =
  | { kind: 'cached' }
  | { kind: 'fill', fill: BlobFill, leader: boolean }
  | { kind: 'answer', answer: A }
  | { kind: 'bypass', answer: A, reason: string }
  | { kind: 'unshared' }

/** What the opener needs of the blob store. */
export type FillSite = Pick<CacheBlobStore, 'stat' | 'inflight' | 'beginFill'>

/** What the single flight hands every asker; `leader` tells which asker's fetch ran. */
type Shared = { kind: 'cached' } | { kind: 'fill', fill: BlobFill, leader?: symbol } | { kind: 'leader-only', leader: symbol, result: FlightResult<unknown> }

export class BlobOpener {
  private readonly flights = new SingleFlight<Shared>()

  constructor (private readonly site: FillSite) {}

  /** See the header. `fetch` runs at most once for concurrent callers; it must not throw for a non-200 answer. */
  async openOrFill<A> (digest: Digest, fetch: () => Promise<FetchedBlob<A>>): Promise<FlightResult<A>> {
    const inflight = this.site.inflight(digest)
    if (inflight !== undefined) return { kind: 'fill', fill: inflight, leader: false }
    const me = Symbol('asker')
    const shared = await this.flights.run(digest.value, async (): Promise<Shared> => {
      if (this.site.stat(digest) !== undefined) return { kind: 'cached' }
      const running = this.site.inflight(digest)
      if (running !== undefined) return { kind: 'fill', fill: running }
      const fetched = await fetch()
      if (fetched.fill === undefined) return { kind: 'leader-only', leader: me, result: { kind: 'answer', answer: fetched.answer } }
      const started = this.site.beginFill(digest, fetched.fill.body, fetched.fill)
      if ('bypass' in started) return { kind: 'leader-only', leader: me, result: { kind: 'bypass', answer: fetched.answer, reason: started.bypass } }
      return { kind: 'fill', fill: started.fill, leader: me }
    })
    if (shared.kind === 'cached') return shared
    if (shared.kind === 'fill') return { kind: 'fill', fill: shared.fill, leader: shared.leader === me }
    return shared.leader === me ? shared.result as FlightResult<A> : { kind: 'unshared' }
  }
}
