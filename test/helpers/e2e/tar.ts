/**
 * A minimal, deterministic POSIX ustar writer for image layers: fixed mtime, uid/gid 0, no user
 * names, entries in the order given. Same input, same bytes, on any machine and tar version, so
 * test images have stable digests.
 */

export interface TarEntry {
  /** Relative path without a leading slash; directories without a trailing slash. */
  path: string
  type: 'file' | 'dir'
  mode: number
  data?: Buffer
}

const BLOCK = 512
const MTIME = 1_700_000_000 // fixed; any constant works

export function tar (entries: TarEntry[]): Buffer {
  const parts: Buffer[] = []
  for (const e of entries) {
    const data = e.type === 'file' ? (e.data ?? Buffer.alloc(0)) : Buffer.alloc(0)
    parts.push(header(e.type === 'dir' ? `${e.path}/` : e.path, e.mode, data.length, e.type === 'dir' ? '5' : '0'))
    parts.push(data)
    const pad = (BLOCK - (data.length % BLOCK)) % BLOCK
    if (pad > 0) parts.push(Buffer.alloc(pad))
  }
  parts.push(Buffer.alloc(2 * BLOCK)) // end-of-archive marker
  return Buffer.concat(parts)
}

function header (name: string, mode: number, size: number, typeflag: string): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar: name too long for this writer: ${name}`)
  const h = Buffer.alloc(BLOCK)
  h.write(name, 0, 100, 'utf8')
  octal(h, 100, 8, mode)
  octal(h, 108, 8, 0)
  octal(h, 116, 8, 0)
  octal(h, 124, 12, size)
  octal(h, 136, 12, MTIME)
  h.write(typeflag, 156, 1, 'ascii')
  h.write('ustar\0', 257, 6, 'ascii')
  h.write('00', 263, 2, 'ascii')
  // The checksum is computed with its own field read as eight spaces.
  h.fill(' ', 148, 156)
  let sum = 0
  for (const b of h) sum += b
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii')
  return h
}

function octal (h: Buffer, offset: number, length: number, value: number): void {
  h.write(value.toString(8).padStart(length - 1, '0') + '\0', offset, length, 'ascii')
}
