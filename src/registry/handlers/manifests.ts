/**
 * Manifests by tag or digest (spec: end-3, end-7, end-9). A push is validated completely — size,
 * JSON, media type, digest, every referenced blob or manifest present in the repository, every
 * tag it asks for — before anything is written.
 *
 * Digest algorithms: a push by digest is hashed with the digest's own algorithm, and a tag keeps
 * the digest it was given, so a sha512 manifest tagged with `?tag=` is answered by tag with
 * `Docker-Content-Digest: sha512:…` (spec, main branch: the header MUST be there on GET and HEAD,
 * and is the pushed digest, not a re-hash as sha256).
 */
import { OciError } from '../../errors.js'
import type { Handler, RequestContext } from '../context.js'
import { pathOf, readLimitedBody, sendEmpty } from '../http.js'
import { MANIFEST_MAX_BYTES, parseManifest, type ParsedManifest } from '../manifest-validation.js'
import { parseReference, parseTag, type Reference } from '../../oci/names.js'
import type { Descriptor } from '../storage/stores.js'
import { digestOfBytes, type Digest } from '../../oci/digest.js'

async function resolve (ctx: RequestContext): Promise<Digest> {
  const ref = parseReference(ctx.params.reference)
  const digest = ref.kind === 'digest' ? ref.digest : await ctx.storage.tags.resolve(ctx.name, ref.tag)
  if (digest === undefined) throw new OciError('MANIFEST_UNKNOWN', undefined, { detail: { reference: ctx.params.reference } })
  return digest
}

// spec: end-3. Served with the media type it was pushed with; Accept is not negotiated.
export const getManifest: Handler = async (ctx) => {
  const digest = await resolve(ctx)
  const m = await ctx.storage.manifests.get(ctx.name, digest)
  if (m === undefined) throw new OciError('MANIFEST_UNKNOWN', undefined, { detail: { reference: ctx.params.reference } })
  ctx.res.writeHead(200, {
    'content-type': m.descriptor.mediaType,
    'content-length': m.body.length,
    'docker-content-digest': digest.value,
    etag: `"${digest.value}"`,
  })
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : m.body)
}

/** Every blob and child manifest the manifest references must be in the repository (spec: end-7). */
async function checkReferences (ctx: RequestContext, parsed: ParsedManifest): Promise<void> {
  const missing = (d: Descriptor): OciError => new OciError('MANIFEST_BLOB_UNKNOWN', undefined, { detail: { digest: d.digest, mediaType: d.mediaType } })
  await Promise.all([
    ...parsed.blobs.map(async d => {
      // retain: a gc running now must not take a blob this manifest is about to reference.
      const info = await ctx.storage.blobs.stat(ctx.name, d.target, { retain: true })
      if (info === undefined) throw missing(d)
      if (info.size !== d.size) throw new OciError('MANIFEST_INVALID', 'descriptor size does not match the blob', { detail: { digest: d.digest, size: d.size, actual: info.size } })
    }),
    ...parsed.manifests.map(async d => {
      if (await ctx.storage.manifests.stat(ctx.name, d.target, { retain: true }) === undefined) throw missing(d)
    }),
  ])
}

/**
 * What a push names: the reference in the path (a tag must be grammatical: 400, not 404), and the
 * `tag` query parameters (spec, main branch: only with a push by digest; each is set to the
 * pushed digest and confirmed with an `OCI-Tag` header).
 */
function pushTargets (ctx: RequestContext): { ref: Reference, tags: string[] } {
  const raw = ctx.params.reference
  const ref: Reference = raw.includes(':') ? parseReference(raw) : { kind: 'tag', tag: parseTag(raw) }
  const extra = ctx.query.getAll('tag')
  if (extra.length > 0 && ref.kind === 'tag') {
    throw new OciError('MANIFEST_INVALID', 'tag query parameters are for a push by digest: PUT …/manifests/<digest>?tag=…', { detail: { reference: raw.slice(0, 200) } })
  }
  const tags = [...new Set(extra.map(parseTag))]
  return { ref, tags: ref.kind === 'tag' ? [ref.tag] : tags }
}

// spec: end-7. 201 with Location and Docker-Content-Digest; OCI-Subject when it has a subject;
// OCI-Tag for each `?tag=` set (spec, main branch).
export const putManifest: Handler = async (ctx) => {
  const { ref, tags } = pushTargets(ctx)
  const body = await readLimitedBody(ctx.req, MANIFEST_MAX_BYTES)
  const algorithm = ref.kind === 'digest' ? ref.digest.algorithm : 'sha256'
  const digest = digestOfBytes(algorithm, body)
  if (ref.kind === 'digest' && ref.digest.value !== digest.value) {
    throw new OciError('DIGEST_INVALID', undefined, { detail: { expected: ref.digest.value, actual: digest.value } })
  }
  const parsed = parseManifest(body, ctx.req.headers['content-type'])
  await checkReferences(ctx, parsed)

  const referrer: Descriptor | undefined = parsed.subject === undefined
    ? undefined
    : {
        mediaType: parsed.mediaType,
        digest: digest.value,
        size: body.length,
        ...(parsed.artifactType !== undefined ? { artifactType: parsed.artifactType } : {}),
        ...(parsed.annotations !== undefined ? { annotations: parsed.annotations } : {}),
      }
  await ctx.storage.manifests.put(ctx.name, { digest, mediaType: parsed.mediaType, body, subject: parsed.subject?.target, referrer })
  for (const tag of tags) await ctx.storage.tags.set(ctx.name, tag, digest)

  const headers: Record<string, string | string[]> = {
    location: pathOf(ctx.basePath, `/v2/${ctx.name}/manifests/${digest.value}`),
    'docker-content-digest': digest.value,
  }
  // spec: a manifest with a subject is answered with OCI-Subject, telling the client we index referrers.
  if (parsed.subject !== undefined) headers['oci-subject'] = parsed.subject.digest
  // One header line per tag: clients read them as a list (regclient also splits on commas).
  if (ref.kind === 'digest' && tags.length > 0) headers['oci-tag'] = tags
  sendEmpty(ctx.res, 201, headers)
}

// spec: end-9. By tag: the tag goes. By digest: the manifest goes, and every tag pointing at it.
export const deleteManifest: Handler = async (ctx) => {
  const ref = parseReference(ctx.params.reference)
  if (ref.kind === 'tag') {
    if (!await ctx.storage.tags.delete(ctx.name, ref.tag)) throw new OciError('MANIFEST_UNKNOWN', undefined, { detail: { tag: ref.tag } })
    sendEmpty(ctx.res, 202, {})
    return
  }
  const digest = ref.digest
  if (!await ctx.storage.manifests.delete(ctx.name, digest)) throw new OciError('MANIFEST_UNKNOWN', undefined, { detail: { digest: digest.value } })
  for (const tag of await ctx.storage.tags.list(ctx.name) ?? []) {
    if ((await ctx.storage.tags.resolve(ctx.name, tag))?.value === digest.value) await ctx.storage.tags.delete(ctx.name, tag)
  }
  sendEmpty(ctx.res, 202, {})
}
