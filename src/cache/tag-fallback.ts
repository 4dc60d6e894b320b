/**
 * Tag records written without a client's Accept — by a warm-up or an import — are keyed by every
 * manifest media type (WARM_ACCEPT). Tag records are keyed by Accept because the answer depends
 * on it (tag-key.ts); such a record still answers a client whose Accept admits its media type, which
 * is what lets a crossdock with no upstream serve an imported tag to dockerd or ctr (STALE), and a
 * warmed tag survive an outage for clients that did not pull it themselves before.
 */
import type { TagRecord, TagRef } from './tag-key.js'

export const WARM_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ')

/** The client's own record, else the warm-up/import record when the client accepts its media type. */
export function findTag (cache: { getTag: (ref: TagRef) => TagRecord | undefined }, ref: TagRef): TagRecord | undefined {
  const own = cache.getTag(ref)
  if (own !== undefined) return own
  const shared = cache.getTag({ ...ref, accept: WARM_ACCEPT })
  if (shared === undefined) return undefined
  return accepts(ref.accept, shared.mediaType) ? shared : undefined
}

function accepts (accept: string | string[] | undefined, mediaType: string): boolean {
  if (accept === undefined) return true
  const ranges = (Array.isArray(accept) ? accept : [accept]).flatMap(a => a.split(',')).map(a => a.split(';')[0].trim().toLowerCase())
  return ranges.length === 0 || ranges.some(r => r === mediaType || r === '*/*' || r === `${mediaType.split('/')[0]}/*`)
}
