/**
 * Tag records written without a client's Accept — by a warm-up or an import — are keyed by every
 * manifest media type (WARM_ACCEPT). Tag records are keyed by Accept because the answer depends
 * on it (tag-key.ts); such a record still answers a client whose Accept admits its media type, which
 * is what lets a crossdock with no upstream serve an imported tag to dockerd or ctr (STALE), and a
 * warmed tag survive an outage for clients that did not pull it themselves before.
 */
import { MANIFEST_ACCEPT } from '../oci/media-types.js'
import type { TagRecord, TagRef } from './tag-key.js'
import type { CacheTagStore } from './stores.js'

/** Every manifest media type: what warm-up and import key their tag records by. */
export const WARM_ACCEPT = MANIFEST_ACCEPT

/** The client's own record, else the warm-up/import record when the client accepts its media type. */
export async function findTag (tags: CacheTagStore, ref: TagRef): Promise<TagRecord | undefined> {
  const own = await tags.lookup(ref)
  if (own !== undefined) return own
  const shared = await tags.lookup({ ...ref, accept: WARM_ACCEPT })
  if (shared === undefined) return undefined
  return accepts(ref.accept, shared.mediaType) ? shared : undefined
}

function accepts (accept: string | string[] | undefined, mediaType: string): boolean {
  if (accept === undefined) return true
  const ranges = (Array.isArray(accept) ? accept : [accept]).flatMap(a => a.split(',')).map(a => a.split(';')[0].trim().toLowerCase())
  return ranges.length === 0 || ranges.some(r => r === mediaType || r === '*/*' || r === `${mediaType.split('/')[0]}/*`)
}
