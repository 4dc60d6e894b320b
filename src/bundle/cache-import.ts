/**
 * `crossdock import --into cache`: the server end. The CLI never writes the cache directory; it
 * sends each blob and manifest here, on the registry door, and the cache takes them through its
 * own paths — a blob through a BlobFill (hashed while written to staging, committed only if digest
 * and length match, LRU-bounded), a manifest after hashing it, a tag as a tag record the pull-through
 * serves when its upstream cannot be asked (STALE), as it would after an outage.
 *
 *   GET  /import/cache/<door name>/blobs/<digest>      200 cached, 404 not (resumable imports skip)
 *   PUT  /import/cache/<door name>/blobs/<digest>      body streamed into the cache; 201, or 400 DIGEST_INVALID
 *   PUT  /import/cache/<door name>/manifests/<ref>     Content-Type = media type; 201
 *
 * <door name> is an upstream namespace as on the registry door (`docker.io/library/alpine`);
 * anything else is refused (hosted names go through `--into hosted`, the registry's own API).
 * Writing into the cache is authorised like a push (HTPASSWD_FILE): it decides what every client is
 * served. The imported repositories are then trusted by the access policy (served without asking an
 * upstream, which an air-gapped crossdock has not): the operator vouched for them.
 */
import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { OciError, writeOciError } from '../errors.js'
import type { Logger } from '../log.js'
import { MAX_MANIFEST_BYTES, type CacheStore } from '../cache/cache-store.js'
import { isValidTag } from '../oci/names.js'
import { parseDigest } from '../oci/digest.js'
import type { Authorizer } from '../oci/authorizer.js'
import { parseManifest } from '../registry/manifest-validation.js'
import { resolveNamespace, UpstreamNames } from '../doors/registry-door-path.js'
import { WARM_ACCEPT } from '../cache/tag-fallback.js'

const PATH_RE = /^\/import\/cache\/(.+)\/(blobs|manifests)\/([^/]+)$/

export interface CacheImportOptions {
  cache: CacheStore
  registries: readonly string[]
  authorize?: Authorizer
  /** The access policy's `trust`: imported repositories are served without an upstream check. */
  trust?: (host: string, repository: string) => Promise<void>
  log: Logger
}

export function createCacheImport (opts: CacheImportOptions) {
  const upstreams = new UpstreamNames(opts.registries)
  const log = opts.log.child({ module: 'cache-import' })

  async function handle (req: IncomingMessage, res: ServerResponse, m: RegExpExecArray): Promise<void> {
    const [, name, kind, reference] = m
    const ns = resolveNamespace(name, upstreams)
    if (ns === undefined) throw new OciError('NAME_INVALID', `${name} is not an upstream namespace (docker.io/…, or a registry in REGISTRIES); import hosted images with --into hosted`)
    await opts.authorize?.(req, { action: 'push', name })
    const origin = { host: ns.host, repository: ns.repository }
    if (kind === 'blobs') {
      const parsed = parseDigest(reference)
      const digest = parsed.value
      const cached = opts.cache.blobs.stat(parsed)
      // GET answers whether the cache holds it (never the bytes: those are served by the door),
      // with an error body a HEAD could not carry.
      if (req.method === 'HEAD' || req.method === 'GET') {
        if (cached === undefined) throw new OciError('BLOB_UNKNOWN')
        const body = JSON.stringify({ digest, size: cached.size })
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'docker-content-digest': digest })
        res.end(req.method === 'HEAD' ? undefined : body)
        return
      }
      if (req.method !== 'PUT') throw new OciError('UNSUPPORTED')
      if (cached !== undefined) { req.resume(); res.writeHead(201, { 'docker-content-digest': digest }).end(); return }
      const length = Number(req.headers['content-length'])
      if (!Number.isSafeInteger(length)) throw new OciError('SIZE_INVALID', 'a Content-Length is required')
      const begun = opts.cache.blobs.beginFill(parsed, req, { expectedSize: length, origin })
      if ('bypass' in begun) throw new OciError('UNAVAILABLE', `the cache cannot take this blob: ${begun.bypass}`, { status: 507 })
      try {
        await begun.fill.done
      } catch (err) {
        throw new OciError('DIGEST_INVALID', `blob ${digest} not stored: ${(err as Error).message}`)
      }
      if (begun.fill.state !== 'committed') throw new OciError('UNAVAILABLE', `blob ${digest} verified but not stored: the cache disk is full`, { status: 507 })
      log.info({ digest, size: length, host: ns.host, repository: ns.repository }, 'blob imported into the cache')
      res.writeHead(201, { 'docker-content-digest': digest }).end()
      return
    }
    if (req.method !== 'PUT') throw new OciError('UNSUPPORTED')
    const bytes = await readManifest(req)
    const contentType = String(req.headers['content-type'] ?? '')
    const parsed = parseManifest(bytes, contentType)
    const asked = reference.includes(':') ? parseDigest(reference) : undefined
    const computed = (algorithm: 'sha256' | 'sha512'): string => `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`
    if (asked === undefined && !isValidTag(reference)) throw new OciError('MANIFEST_INVALID', `invalid tag ${JSON.stringify(reference)}`)
    const algorithm = asked?.algorithm ?? 'sha256'
    const digest = parseDigest(computed(algorithm))
    if (asked !== undefined && asked.value !== digest.value) throw new OciError('DIGEST_INVALID', `manifest ${asked.value} has digest ${digest.value}`)
    for (const d of [...parsed.blobs, ...parsed.manifests]) {
      const present = parsed.manifests.includes(d) ? opts.cache.manifests.has(d.target) : opts.cache.blobs.stat(d.target) !== undefined
      if (!present) throw new OciError('MANIFEST_BLOB_UNKNOWN', `import ${d.digest} before the manifest that references it`)
    }
    if (!await opts.cache.manifests.put(digest, bytes, parsed.mediaType, origin)) throw new OciError('UNAVAILABLE', 'the cache did not take the manifest', { status: 507 })
    await opts.trust?.(ns.host, ns.repository)
    if (asked === undefined) {
      // Keyed like a warm-up's tag record, which the pull-through consults for any client whose
      // Accept admits the media type (tag-fallback.ts).
      await opts.cache.tags.put({ host: ns.host, repository: ns.repository, tag: reference, accept: WARM_ACCEPT }, { digest: digest.value, mediaType: parsed.mediaType, size: bytes.length, fetchedAt: Date.now() })
    }
    log.info({ digest: digest.value, host: ns.host, repository: ns.repository, reference }, 'manifest imported into the cache')
    res.writeHead(201, { 'docker-content-digest': digest.value }).end()
  }

  return {
    route: (req: IncomingMessage): ((req: IncomingMessage, res: ServerResponse) => Promise<void>) | undefined => {
      const m = PATH_RE.exec((req.url ?? '').split('?')[0])
      if (m === null) return undefined
      return async (req, res) => {
        try {
          await handle(req, res, m)
        } catch (err) {
          if (!(err instanceof OciError)) throw err
          if (!req.complete) req.resume()
          writeOciError(res, err, req.method)
        }
      }
    },
  }
}

async function readManifest (req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  let n = 0
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length
    if (n > MAX_MANIFEST_BYTES) throw new OciError('MANIFEST_INVALID', `manifest larger than ${MAX_MANIFEST_BYTES} bytes`, { status: 413 })
    chunks.push(c)
  }
  return Buffer.concat(chunks)
}
