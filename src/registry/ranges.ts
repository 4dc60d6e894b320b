/**
 * The two byte-range headers of the API: `Range` on blob GET (RFC 9110, one range, answered 206/416)
 * and `Content-Range` on upload PATCH/PUT (spec: `^[0-9]+-[0-9]+$`, inclusive on both ends).
 */
import { OciError } from '../errors.js'

export interface ByteRange {
  /** First byte, inclusive. */
  start: number
  /** Last byte, inclusive. */
  end: number
}

/**
 * Parses a request `Range` against a blob of `size` bytes. Returns undefined when the whole blob is
 * to be sent (no header, a unit other than bytes, or several ranges, which we answer with 200 as
 * RFC 9110 allows); throws RANGE_INVALID (416, with `Content-Range: bytes * /size`) when unsatisfiable.
 */
export function parseRange (header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined) return undefined
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (m === null) {
    if (/^bytes=/.test(header.trim()) && !header.includes(',')) throw unsatisfiable(size)
    return undefined
  }
  const [, a, b] = m
  if (a === '' && b === '') throw unsatisfiable(size)
  let start: number
  let end: number
  if (a === '') {
    // suffix range: the last N bytes
    const n = Number(b)
    if (n === 0 || size === 0) throw unsatisfiable(size)
    start = Math.max(0, size - n)
    end = size - 1
  } else {
    start = Number(a)
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1)
    if (b !== '' && Number(b) < start) throw unsatisfiable(size)
  }
  if (start >= size || !Number.isSafeInteger(start) || !Number.isSafeInteger(end)) throw unsatisfiable(size)
  return { start, end }
}

function unsatisfiable (size: number): OciError {
  return new OciError('RANGE_INVALID', 'requested range not satisfiable', { headers: { 'content-range': `bytes */${size}` } })
}

/**
 * Parses an upload `Content-Range`. spec: `<start>-<end>`, inclusive; we also take the RFC form
 * `bytes <start>-<end>/<total|*>` that some clients send. Throws BLOB_UPLOAD_INVALID when malformed.
 */
export function parseContentRange (header: string): ByteRange {
  const m = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(header.trim())
  if (m === null) throw new OciError('BLOB_UPLOAD_INVALID', 'invalid Content-Range', { detail: { contentRange: header.slice(0, 100) } })
  const start = Number(m[1])
  const end = Number(m[2])
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) {
    throw new OciError('BLOB_UPLOAD_INVALID', 'invalid Content-Range', { detail: { contentRange: header.slice(0, 100) } })
  }
  return { start, end }
}

/** The `Range` header of upload responses: `0-<last byte received>` (`0-0` before any byte, as distribution does). */
export function uploadRangeHeader (offset: number): string {
  return `0-${Math.max(0, offset - 1)}`
}
