/**
 * Warm-up: pulls every platform's manifests and blobs of some upstream images into the cache, by
 * being a client of this crossdock's own registry door (RegistryClient to our own socket). So it is
 * the very path a `docker pull` takes — the same routing, upstream credentials (AUTH_REGISTRIES),
 * access decisions, single-flight fills (a client pulling meanwhile joins the warm-up's fill and the
 * other way round), digest checks and tag records — and never a second writer of the cache.
 *
 *   per image:  HEAD <tag> ─HIT─► GET <digest> (from the cache)      the HEAD is what Docker Hub
 *                         └─else─► GET <tag> (HEAD + GET upstream)   does not count as a pull
 *               each platform manifest: GET <digest>
 *               each blob: already cached? skip : GET and discard (the door's fill caches it)
 *   429 anywhere: stop the whole run; Retry-After / RateLimit-Reset say when to try again.
 *
 * Events describe the run as it goes (the /warm endpoint streams them to `crossdock warm`).
 */
import type { Logger } from '../log.js'
import { ClientError, type RegistryClient } from '../client/registry-client.js'
import { readImageContent, type ImageReference } from '../client/image-content.js'
import { retryAfterMs } from './rate-limit.js'

export type WarmEvent =
  | { event: 'image', image: string, digest: string, manifests: number, blobs: number, bytes: number }
  | { event: 'blob', image: string, digest: string, size: number, status: 'cached' | 'fetched' }
  | { event: 'image-done', image: string, fetchedBlobs: number, fetchedBytes: number, cachedBlobs: number }
  | { event: 'error', image: string, message: string }
  | { event: 'rate-limited', image: string, message: string, retryAt?: string }
  | { event: 'end', ok: boolean, images: number, failed: number, fetchedBytes: number }

export interface WarmerOptions {
  /** A client of this crossdock's own registry door. */
  client: () => RegistryClient
  /** Whether the cache holds the blob already (a read of the cache index; nothing is written). */
  isCached: (digest: string) => boolean
  log: Logger
}

export interface WarmOutcome {
  ok: boolean
  /** Set when an upstream said 429: the earliest time to try again, if it said. */
  retryAt?: Date
  rateLimited: boolean
}

export class Warmer {
  constructor (private readonly opts: WarmerOptions) {}

  async warm (images: ImageReference[], onEvent: (e: WarmEvent) => void = () => {}, stopped: () => boolean = () => false): Promise<WarmOutcome> {
    let failed = 0
    let fetchedTotal = 0
    for (const ref of images) {
      if (stopped()) break
      try {
        fetchedTotal += await this.warmImage(ref, onEvent, stopped)
      } catch (err) {
        failed++
        if (err instanceof ClientError && err.status === 429) {
          const wait = retryAfterMs(err.headers)
          const retryAt = wait === undefined ? undefined : new Date(Date.now() + wait)
          const message = `${ref.text}: the upstream is rate limiting (429); stopped${retryAt === undefined ? '' : `, retry after ${retryAt.toISOString()}`}`
          this.opts.log.warn({ image: ref.text, retryAt: retryAt?.toISOString() }, 'warm-up stopped: upstream rate limit')
          onEvent({ event: 'rate-limited', image: ref.text, message, retryAt: retryAt?.toISOString() })
          onEvent({ event: 'end', ok: false, images: images.length, failed, fetchedBytes: fetchedTotal })
          return { ok: false, retryAt, rateLimited: true }
        }
        const message = err instanceof ClientError ? err.message : `${ref.text}: ${(err as Error).message}`
        this.opts.log.warn({ image: ref.text, err: message }, 'warm-up of an image failed')
        onEvent({ event: 'error', image: ref.text, message })
      }
    }
    const ok = failed === 0 && !stopped()
    onEvent({ event: 'end', ok, images: images.length, failed, fetchedBytes: fetchedTotal })
    return { ok, rateLimited: false }
  }

  /** Returns the bytes fetched from the upstream for this image. */
  private async warmImage (ref: ImageReference, onEvent: (e: WarmEvent) => void, stopped: () => boolean): Promise<number> {
    const { isCached } = this.opts
    const client = this.opts.client()
    let target = ref
    if (!ref.reference.includes(':')) {
      const head = await client.manifest(ref.name, ref.reference, 'HEAD')
      if (head === undefined) throw new ClientError(`unknown image ${ref.text}: no such tag upstream`, 404)
      // Cached (HIT): read it by digest, which asks the upstream nothing more. Otherwise GET the
      // tag, so the door records the tag too (served STALE if the upstream is down later).
      if (head.cacheStatus === 'HIT' && head.digest !== '') target = { ...ref, reference: head.digest }
    }
    const content = await readImageContent(client, target)
    const bytes = content.blobs.reduce((n, b) => n + b.size, 0)
    onEvent({ event: 'image', image: ref.text, digest: content.root.digest, manifests: content.manifests.length, blobs: content.blobs.length, bytes })
    let fetchedBlobs = 0
    let fetchedBytes = 0
    let cachedBlobs = 0
    for (const b of content.blobs) {
      if (stopped()) break
      if (isCached(b.digest)) {
        cachedBlobs++
        onEvent({ event: 'blob', image: ref.text, digest: b.digest, size: b.size, status: 'cached' })
        continue
      }
      const { body } = await client.blob(ref.name, b.digest)
      for await (const chunk of body as AsyncIterable<Buffer>) fetchedBytes += chunk.length
      fetchedBlobs++
      onEvent({ event: 'blob', image: ref.text, digest: b.digest, size: b.size, status: 'fetched' })
    }
    onEvent({ event: 'image-done', image: ref.text, fetchedBlobs, fetchedBytes, cachedBlobs })
    return fetchedBytes
  }
}

