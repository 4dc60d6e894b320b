/** Blob reads and deletes (spec: end-2, end-10). Bytes are streamed from disk, never buffered. */
import { OciError } from '../../errors.js'
import type { Handler } from '../context.js'
import { sendEmpty } from '../http.js'
import { parseDigest } from '../../oci/digest.js'
import { contentRange, parseRange, unsatisfiedRange } from '../../oci/range.js'

// spec: end-2 (GET/HEAD), with Range for resumable pulls: 206 + Content-Range, 416 when
// unsatisfiable; the same parser and answers as the pull-through cache (oci/range.ts).
export const getBlob: Handler = async ({ req, res, name, params, storage }) => {
  const digest = parseDigest(params.digest)
  const info = await storage.blobs.stat(name, digest)
  if (info === undefined) throw new OciError('BLOB_UNKNOWN', undefined, { detail: { digest: digest.value } })
  const range = parseRange(req.headers.range, info.size)
  if (range === 'unsatisfiable') {
    throw new OciError('RANGE_INVALID', 'requested range not satisfiable', { headers: { 'content-range': unsatisfiedRange(info.size) } })
  }
  const headers: Record<string, string | number> = {
    'content-type': 'application/octet-stream',
    'docker-content-digest': digest.value,
    etag: `"${digest.value}"`,
    'accept-ranges': 'bytes',
    'cache-control': 'max-age=31536000',
    'content-length': range === undefined ? info.size : range.end - range.start + 1,
  }
  if (range !== undefined) headers['content-range'] = contentRange(range, info.size)
  const status = range === undefined ? 200 : 206
  if (req.method === 'HEAD') {
    res.writeHead(status, headers)
    res.end()
    return
  }
  const sent = await storage.blobs.send(digest, res, { range, ready: () => res.writeHead(status, headers) })
  if (!sent) throw new OciError('BLOB_UNKNOWN', undefined, { detail: { digest: digest.value } })
  res.end()
}

// spec: end-10. Removes the repository's link; the bytes go at the next gc if nothing else uses them.
export const deleteBlob: Handler = async ({ res, name, params, storage }) => {
  const digest = parseDigest(params.digest)
  if (!await storage.blobs.unlink(name, digest)) throw new OciError('BLOB_UNKNOWN', undefined, { detail: { digest: digest.value } })
  sendEmpty(res, 202, { 'docker-content-digest': digest.value })
}
