/**
 * The byte-range headers of the API, one parser for both doors (the hosted registry and the
 * pull-through cache answer the same `Range` the same way):
 *
 *   `Range` on blob GET/HEAD (RFC 9110 §14.1.2, §14.2), against a blob of `size` bytes:
 *     no header, another unit, several ranges ─────────► undefined: 200, the whole blob
 *     syntactically invalid (`bytes=-`, `bytes=x-1`)
 *       or last < first (`bytes=5-2`) ──────────────────► undefined: 200 (§14.2: a server MUST ignore
 *                                                          an invalid range; §14.1.1: last < first is invalid)
 *     first ≥ size, suffix `-0`, any range of an
 *       empty blob ─────────────────────────────────────► 'unsatisfiable': 416 + `Content-Range: bytes * /size`
 *     otherwise ─────────────────────────────────────────► { start, end }: 206, `end` clamped to size - 1
 *   The unit is case-insensitive (§14.1: `BYTES=0-1` is a range); whitespace around `=`, `-` and the
 *   header is tolerated, as both doors' clients (curl, containerd) never send it but proxies may.
 *   Several ranges are answered whole (200), as §14.2 allows: no multipart/byteranges.
 *
 *   `Content-Range` on upload PATCH/PUT: spec `^[0-9]+-[0-9]+$`, inclusive on both ends; the RFC form
 *   `bytes <start>-<end>/<total|*>` that some clients send is taken too.
 */
import { OciError } from '../errors.js'

export interface ByteRange {
  /** First byte, inclusive. */
  start: number
  /** Last byte, inclusive. */
  end: number
}

/** See the header: undefined serves the whole blob; 'unsatisfiable' is a 416. */
export function parseRange (header: string | string[] | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (header === undefined || Array.isArray(header)) return undefined
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header)
  if (m === null) return undefined
  const [, first, last] = m
  if (first === '' && last === '') return undefined
  if (first === '') {
    // A suffix range: the last N bytes.
    const n = Number(last)
    if (n === 0 || size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(first)
  if (last !== '' && Number(last) < start) return undefined
  if (!Number.isSafeInteger(start) || start >= size) return 'unsatisfiable'
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1)
  return { start, end }
}

/** The `Content-Range` of a 416: `bytes *\/size`. */
export function unsatisfiedRange (size: number): string {
  return `bytes */${size}`
}

/** The `Content-Range` of a 206. */
export function contentRange (range: ByteRange, size: number): string {
  return `bytes ${range.start}-${range.end}/${size}`
}

/** Parses an upload `Content-Range` (see the header). Throws BLOB_UPLOAD_INVALID when malformed. */
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

/**
 * The `Content-Range` of a 206 an upstream sent (RFC 9110 §14.4): `bytes <first>-<last>/<complete>`,
 * strictly; undefined for anything else (`*` lengths, other units, last < first, first past the end).
 */
export function parseAnsweredRange (header: string | string[] | undefined): ByteRange & { size: number } | undefined {
  if (typeof header !== 'string') return undefined
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+)\s*$/i.exec(header)
  if (m === null) return undefined
  const [start, end, size] = [Number(m[1]), Number(m[2]), Number(m[3])]
  if (![start, end, size].every(Number.isSafeInteger) || end < start || end >= size) return undefined
  return { start, end, size }
}
