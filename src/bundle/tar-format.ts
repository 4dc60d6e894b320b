/**
 * The tar format, as far as OCI image layout archives need it (POSIX.1-1988 ustar, plus what Go's
 * archive/tar — skopeo's writer — may emit): 512-byte headers, the size as octal or, above ustar's
 * 8 GiB limit, GNU base-256 (a layer can be 10 GB; Go, GNU tar and bsdtar read both), PAX `x`
 * records and GNU `L` long names on read. No links, devices or sparse files: a layout has none.
 */

export const BLOCK = 512
/** The largest size ustar's 11 octal digits hold (8 GiB - 1). */
const OCTAL_MAX = 0o77777777777

export type EntryType = 'file' | 'directory' | 'pax' | 'pax-global' | 'gnu-longname' | 'other'

export interface TarHeader {
  name: string
  size: number
  type: EntryType
}

/** A ustar header block for a regular file (or directory) named `name` (≤ 100 bytes, or split at `/` into prefix + name). */
export function encodeHeader (name: string, size: number, type: 'file' | 'directory' = 'file', mtime = 0): Buffer {
  const h = Buffer.alloc(BLOCK)
  const [prefix, base] = splitName(name)
  h.write(base, 0, 100, 'utf8')
  writeOctal(h, type === 'directory' ? 0o755 : 0o644, 100, 8)
  writeOctal(h, 0, 108, 8) // uid
  writeOctal(h, 0, 116, 8) // gid
  if (size <= OCTAL_MAX) writeOctal(h, size, 124, 12)
  else writeBase256(h, size, 124, 12)
  writeOctal(h, mtime, 136, 12)
  h.write(type === 'directory' ? '5' : '0', 156, 1, 'ascii')
  h.write('ustar\u000000', 257, 8, 'ascii')
  h.write(prefix, 345, 155, 'utf8')
  // The checksum is computed with its own field as eight spaces.
  h.fill(0x20, 148, 156)
  let sum = 0
  for (const b of h) sum += b
  h.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'ascii')
  return h
}

/** Zero bytes that complete a `size`-byte entry to a whole block. */
export function padding (size: number): Buffer {
  const rest = size % BLOCK
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest)
}

/** Two zero blocks end an archive. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK)

/** Parses a header block; undefined for a zero block (the end); throws on a bad checksum. */
export function decodeHeader (h: Buffer): TarHeader | undefined {
  if (h.every(b => b === 0)) return undefined
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]
  const stored = parseInt(cString(h, 148, 8).trim() || '0', 8)
  if (stored !== sum) throw new Error('not a tar archive (header checksum mismatch)')
  const name = cString(h, 0, 100)
  const magic = h.toString('ascii', 257, 262)
  const prefix = magic === 'ustar' ? cString(h, 345, 155) : ''
  const flag = String.fromCharCode(h[156])
  const type: EntryType = flag === '0' || flag === '\u0000' || flag === '7' ? 'file'
    : flag === '5' ? 'directory'
      : flag === 'x' ? 'pax'
        : flag === 'g' ? 'pax-global'
          : flag === 'L' ? 'gnu-longname'
            : 'other'
  return { name: prefix === '' ? name : `${prefix}/${name}`, size: readSize(h, 124, 12), type }
}

/** PAX extended header records (`<len> key=value\n`…). */
export function parsePax (data: Buffer): Record<string, string> {
  const out: Record<string, string> = {}
  let pos = 0
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos)
    if (space < 0) break
    const len = Number(data.toString('ascii', pos, space))
    if (!Number.isSafeInteger(len) || len <= 0) break
    const record = data.toString('utf8', space + 1, pos + len - 1)
    const eq = record.indexOf('=')
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1)
    pos += len
  }
  return out
}

function splitName (name: string): [string, string] {
  if (Buffer.byteLength(name) <= 100) return ['', name]
  const slash = name.lastIndexOf('/', name.length - 1)
  const prefix = name.slice(0, slash)
  const base = name.slice(slash + 1)
  if (slash < 0 || Buffer.byteLength(prefix) > 155 || Buffer.byteLength(base) > 100) throw new Error(`tar: name too long for ustar: ${name}`)
  return [prefix, base]
}

function writeOctal (h: Buffer, value: number, offset: number, length: number): void {
  h.write(`${value.toString(8).padStart(length - 1, '0')}\u0000`, offset, length, 'ascii')
}

function writeBase256 (h: Buffer, value: number, offset: number, length: number): void {
  let v = BigInt(value)
  for (let i = offset + length - 1; i > offset; i--) { h[i] = Number(v & 0xffn); v >>= 8n }
  h[offset] = 0x80
}

function readSize (h: Buffer, offset: number, length: number): number {
  if ((h[offset] & 0x80) !== 0) {
    let v = 0n
    for (let i = offset + 1; i < offset + length; i++) v = (v << 8n) | BigInt(h[i])
    return Number(v)
  }
  const text = cString(h, offset, length).trim()
  return text === '' ? 0 : parseInt(text, 8)
}

function cString (h: Buffer, offset: number, length: number): string {
  const end = h.indexOf(0, offset)
  return h.toString('utf8', offset, end < 0 || end > offset + length ? offset + length : end)
}
