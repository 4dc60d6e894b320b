/**
 * Warm-up's two ways in: WARM_IMAGES at start and every WARM_INTERVAL (a 429 moves the next run to
 * when the upstream said to come back), and `POST /warm` on the registry door for `crossdock warm`.
 *
 *   crossdock warm ──POST /warm {"images":[…]}──► authorize each as a pull (HTPASSWD_FILE)
 *                  ◄── 200 application/x-ndjson: one WarmEvent a line, as the run goes ──┘
 *
 * The registry door, not the proxy door: it is where pulls are authorised with the same Basic
 * credentials a `docker pull` of the image would need, and where images are named by path.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { OciError, writeOciError } from '../errors.js'
import type { Logger } from '../log.js'
import { parseImageReference, type ImageReference } from '../client/image-content.js'
import { resolveNamespace, UpstreamNames } from '../doors/registry-door-path.js'
import type { Authorizer } from '../oci/authorizer.js'
import type { Warmer, WarmEvent } from './warmer.js'

export const WARM_PATH = '/warm'
const MAX_BODY = 64 << 10
const MAX_IMAGES = 1000

export interface WarmServiceOptions {
  warmer: Warmer
  registries: readonly string[]
  /** WARM_IMAGES, already parsed. */
  images: ImageReference[]
  /** WARM_INTERVAL in ms; 0: once at start. */
  intervalMs: number
  authorize?: Authorizer
  log: Logger
}

/** Parses WARM_IMAGES-style references and checks each names an upstream namespace; throws one line. */
export function parseWarmImages (texts: string[], registries: readonly string[]): ImageReference[] {
  const upstreams = new UpstreamNames(registries)
  return texts.map(text => {
    const ref = parseImageReference(text)
    if (resolveNamespace(ref.name, upstreams) === undefined) {
      throw new Error(`${JSON.stringify(text)} is not an upstream image: warm-up fills the pull-through cache, so name the registry first (docker.io/library/alpine:3.20, ghcr.io/org/app:1; registries: Docker Hub and REGISTRIES)`)
    }
    return ref
  })
}

export function createWarmService (opts: WarmServiceOptions) {
  const log = opts.log.child({ module: 'warm' })
  let timer: NodeJS.Timeout | undefined
  let stopped = false
  let running: Promise<unknown> = Promise.resolve()

  const scheduled = async (): Promise<void> => {
    log.info({ images: opts.images.map(i => i.text) }, 'warm-up (WARM_IMAGES) starting')
    let fetched = 0
    const outcome = await opts.warmer.warm(opts.images, e => { if (e.event === 'end') fetched = e.fetchedBytes }, () => stopped)
    log.info({ ok: outcome.ok, fetchedBytes: fetched, rateLimited: outcome.rateLimited }, 'warm-up (WARM_IMAGES) finished')
    if (stopped) return
    const retryIn = outcome.retryAt === undefined ? undefined : Math.max(1000, outcome.retryAt.getTime() - Date.now())
    const next = retryIn !== undefined && (opts.intervalMs === 0 || retryIn < opts.intervalMs) ? retryIn : opts.intervalMs
    if (next > 0) {
      if (retryIn !== undefined) log.warn({ retryAt: outcome.retryAt?.toISOString() }, 'warm-up rate limited; next run then')
      timer = setTimeout(() => { running = scheduled() }, next)
      timer.unref()
    }
  }

  async function handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    let images: ImageReference[]
    try {
      const body = await readSmallBody(req)
      let texts: unknown
      try { texts = JSON.parse(body).images } catch { throw badRequest('the body must be JSON: {"images":["docker.io/library/alpine:3.20", …]}') }
      if (!Array.isArray(texts) || texts.length === 0 || texts.length > MAX_IMAGES || texts.some(t => typeof t !== 'string')) {
        throw badRequest(`"images" must be a list of 1 to ${MAX_IMAGES} image references`)
      }
      try { images = parseWarmImages(texts as string[], opts.registries) } catch (err) { throw badRequest((err as Error).message) }
      // Authorised like a pull of each image: whoever could pull it may warm it.
      for (const i of images) await opts.authorize?.(req, { action: 'pull', name: i.name })
    } catch (err) {
      if (!(err instanceof OciError)) throw err
      writeOciError(res, err, req.method)
      return
    }
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' })
    let gone = false
    res.on('close', () => { gone = !res.writableFinished })
    const send = (e: WarmEvent): void => { if (!gone) res.write(`${JSON.stringify(e)}\n`) }
    log.info({ images: images.map(i => i.text) }, 'warm-up requested')
    // A client that goes away stops the run between blobs (a fill in flight finishes on its own).
    await opts.warmer.warm(images, send, () => gone || stopped)
    res.end()
  }

  return {
    /** For the registry server's route hook: the handler of `POST /warm`, else undefined. */
    route: (req: IncomingMessage): ((req: IncomingMessage, res: ServerResponse) => Promise<void>) | undefined => {
      if ((req.url ?? '').split('?')[0] !== WARM_PATH) return undefined
      if (req.method !== 'POST') return async (req, res) => { req.resume(); writeOciError(res, new OciError('UNSUPPORTED', 'POST /warm with {"images":[…]}'), req.method) }
      return handle
    },
    /** Starts the WARM_IMAGES schedule (no-op without images); call once both doors listen. */
    start: (): void => {
      if (opts.images.length === 0) return
      running = scheduled().catch(err => log.error({ err: (err as Error).message }, 'warm-up failed'))
    },
    /** Stops scheduling; a run in flight ends between blobs (or when the door closes under it). */
    stop: (): void => {
      stopped = true
      clearTimeout(timer)
    },
    /** The scheduled run in flight, if any (tests). */
    settled: async (): Promise<void> => { await running.catch(() => {}) },
  }
}

function badRequest (message: string): OciError {
  return new OciError('NAME_INVALID', message, { status: 400 })
}

async function readSmallBody (req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  let n = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    n += chunk.length
    if (n > MAX_BODY) throw badRequest(`the body is larger than ${MAX_BODY} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}
