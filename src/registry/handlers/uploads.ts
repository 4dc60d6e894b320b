/**
 * Blob uploads (spec: end-4a, end-4b, end-11, end-5, end-6, end-13, and cancel from detail.md).
 * Request bodies are handed to the upload store as streams; its pipeline owns backpressure and errors.
 */
import type { Readable } from 'node:stream'
import { OciError } from '../../errors.js'
import type { Handler, RequestContext } from '../context.js'
import { contentLength, hasBody, pathOf, sendEmpty } from '../http.js'
import { parseDigest, type Digest } from '../../oci/digest.js'
import { assertName } from '../../oci/names.js'
import { parseContentRange, uploadRangeHeader, type ByteRange } from '../../oci/range.js'
import type { UploadSession } from '../storage/stores.js'

const EMPTY_DIGESTS = new Set([
  'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  'sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e',
])

function uploadLocation (ctx: RequestContext, id: string): string {
  return pathOf(ctx.basePath, `/v2/${ctx.name}/blobs/uploads/${id}`)
}

function blobLocation (ctx: RequestContext, digest: string): string {
  return pathOf(ctx.basePath, `/v2/${ctx.name}/blobs/${digest}`)
}

function sendSession (ctx: RequestContext, status: number, session: Pick<UploadSession, 'id' | 'offset'>): void {
  sendEmpty(ctx.res, status, {
    location: uploadLocation(ctx, session.id),
    range: uploadRangeHeader(session.offset),
    'docker-upload-uuid': session.id,
  })
}

function sendCreated (ctx: RequestContext, digest: string): void {
  sendEmpty(ctx.res, 201, { location: blobLocation(ctx, digest), 'docker-content-digest': digest })
}

async function session (ctx: RequestContext): Promise<UploadSession> {
  const s = await ctx.storage.uploads.get(ctx.name, ctx.params.id)
  if (s === undefined) throw new OciError('BLOB_UPLOAD_UNKNOWN', undefined, { detail: { id: ctx.params.id.slice(0, 100) } })
  return s
}

/**
 * Where a chunk must start. spec: end-5 chunks carry `Content-Range: <start>-<end>` matching
 * Content-Length. A body without it is accepted as a stream (no Content-Length, as docker and
 * go-containerregistry send it: it goes on at the offset, whatever it is) or as the first and only
 * chunk (`firstOnly`: it must start at 0).
 */
function chunkStart (ctx: RequestContext): { start?: number, firstOnly?: true } {
  const header = ctx.req.headers['content-range']
  const length = contentLength(ctx.req)
  if (header === undefined) return length !== undefined && length > 0 ? { start: 0, firstOnly: true } : {}
  const range: ByteRange = parseContentRange(header)
  if (length !== undefined && length !== range.end - range.start + 1) {
    throw new OciError('SIZE_INVALID', 'Content-Range does not match Content-Length', { detail: { contentRange: header, contentLength: length } })
  }
  return { start: range.start }
}

/**
 * Runs an append or completion of the session in the URL. The store reads the session once, under
 * its lock, and checks the chunk's start there; its 416 is dressed here: with where the session is
 * (so the client can resume), or, for a chunk that had to be the first, as the missing Content-Range
 * it really is (400).
 */
async function onSession<T> (ctx: RequestContext, chunk: { firstOnly?: true }, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof OciError && err.code === 'RANGE_INVALID') {
      if (chunk.firstOnly === true) throw new OciError('BLOB_UPLOAD_INVALID', 'Content-Range is required for a chunk after the first', { detail: err.detail })
      Object.assign(err.headers, { location: uploadLocation(ctx, ctx.params.id), 'docker-upload-uuid': ctx.params.id })
    }
    throw err
  }
}

// spec: end-4a. A session for a resumable (POST, PATCH…, PUT) or monolithic (POST, PUT) upload.
export const startUpload: Handler = async (ctx) => {
  ctx.req.resume()
  sendSession(ctx, 202, await ctx.storage.uploads.create(ctx.name))
}

// spec: end-4b. The whole blob in the POST body; the digest is checked before it becomes visible.
export const postMonolithic: Handler = async (ctx) => {
  const digest = parseDigest(ctx.query.get('digest') ?? '')
  if (!hasBody(ctx.req) && !EMPTY_DIGESTS.has(digest.value)) {
    // spec: a registry may answer 202 and let the client PUT, as for end-4a.
    ctx.req.resume()
    sendSession(ctx, 202, await ctx.storage.uploads.create(ctx.name, { algorithm: digest.algorithm }))
    return
  }
  await uploadWhole(ctx, digest, ctx.req)
  sendCreated(ctx, digest.value)
}

/** The whole blob in one body, through a session of its own: nothing remains of a failed one. */
async function uploadWhole (ctx: RequestContext, digest: Digest, body: Readable): Promise<void> {
  const s = await ctx.storage.uploads.create(ctx.name, { algorithm: digest.algorithm })
  try {
    await ctx.storage.uploads.complete(ctx.name, s.id, digest, body)
  } catch (err) {
    await ctx.storage.uploads.cancel(ctx.name, s.id)
    throw err
  }
}

// spec: end-11. Link a blob the client may read in `from`; 202 and a fresh session when we cannot.
export const mountBlob: Handler = async (ctx) => {
  ctx.req.resume()
  const digest = parseDigest(ctx.query.get('mount') ?? '')
  const from = ctx.query.get('from')
  if (from !== null) {
    assertName(from)
    await ctx.authorize({ action: 'pull', name: from })
    if (await ctx.storage.blobs.stat(from, digest) !== undefined && await ctx.storage.blobs.link(ctx.name, digest) !== undefined) {
      sendCreated(ctx, digest.value)
      return
    }
    if (await mountFromSource(ctx, from, digest)) {
      sendCreated(ctx, digest.value)
      return
    }
  }
  sendSession(ctx, 202, await ctx.storage.uploads.create(ctx.name, { algorithm: digest.algorithm }))
}

/**
 * A mount from outside hosted storage (a pull-through namespace, via ctx.mountSource): link the
 * content if we already hold it, else copy it in through an upload session, which verifies the
 * digest before anything becomes visible. False when the source does not have it.
 */
async function mountFromSource (ctx: RequestContext, from: string, digest: Digest): Promise<boolean> {
  const source = await ctx.mountSource?.(from, digest)
  if (source === undefined) return false
  if (await ctx.storage.blobs.link(ctx.name, digest) !== undefined) return true
  const body = await source.open()
  if (body === undefined) return false
  try {
    await uploadWhole(ctx, digest, body)
  } catch (err) {
    body.destroy() // ours to close (MountSource), whatever the upload did with it
    throw err
  }
  return true
}

// spec: end-5. Append a chunk (or the whole stream); 416 with Range when out of order.
export const patchUpload: Handler = async (ctx) => {
  const chunk = chunkStart(ctx)
  const offset = await onSession(ctx, chunk, async () => await ctx.storage.uploads.append(ctx.name, ctx.params.id, ctx.req, { start: chunk.start }))
  sendSession(ctx, 202, { id: ctx.params.id, offset })
}

// spec: end-6. Close the session with the whole blob's digest, with or without a last chunk.
export const putUpload: Handler = async (ctx) => {
  const raw = ctx.query.get('digest')
  if (raw === null) throw new OciError('DIGEST_INVALID', 'the digest query parameter is required')
  const digest = parseDigest(raw)
  const body = hasBody(ctx.req) ? ctx.req : undefined
  const chunk = body !== undefined ? chunkStart(ctx) : {}
  if (body === undefined) ctx.req.resume()
  await onSession(ctx, chunk, async () => await ctx.storage.uploads.complete(ctx.name, ctx.params.id, digest, body, { start: chunk.start }))
  sendCreated(ctx, digest.value)
}

// spec: end-13. Where the session is: 204, Range 0-<last byte>, Location to continue.
export const getUploadStatus: Handler = async (ctx) => {
  sendSession(ctx, 204, await session(ctx))
}

// detail.md "DELETE Blob Upload": cancel the session and drop its bytes.
export const cancelUpload: Handler = async (ctx) => {
  if (!await ctx.storage.uploads.cancel(ctx.name, ctx.params.id)) throw new OciError('BLOB_UPLOAD_UNKNOWN')
  sendEmpty(ctx.res, 204, {})
}
