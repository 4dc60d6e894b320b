/**
 * HTTP Range for cached content (RFC 9110 §14): one `bytes=` range, answered 206; several ranges
 * are answered with the whole body (200), as the RFC allows; a range that starts past the end is
 * 416 with `Content-Range: bytes *\/size`.
 */
export interface ByteRange {
  start: number
  /** Inclusive. */
  end: number
}

/** undefined: no (usable) Range, serve it all; 'unsatisfiable': answer 416. */
export function parseByteRange (header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header)
  if (m === null) return undefined
  const [, first, last] = m
  if (first === '' && last === '') return undefined
  if (first === '') {
    const suffix = Number(last)
    if (suffix === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(first)
  if (start >= size) return 'unsatisfiable'
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1)
  if (end < start) return undefined
  return { start, end }
}
