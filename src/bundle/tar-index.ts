/**
 * Reads a tar archive on disk without extracting it: one pass over the headers alone (each body is
 * skipped by seeking, so a 10 GB layer costs one 512-byte read), giving each regular file's offset
 * and size. Bodies are then read in place with `fs.createReadStream({ start, end })`, in whatever
 * order the importer needs (skopeo writes `blobs/` before `index.json`).
 */
import { open } from 'node:fs/promises'
import { createReadStream } from 'node:fs'
import { Readable } from 'node:stream'
import { BLOCK, decodeHeader, parsePax } from './tar-format.js'

export interface TarEntry {
  name: string
  /** Where the body starts in the file. */
  offset: number
  size: number
}

export class TarIndex {
  private constructor (readonly path: string, readonly entries: Map<string, TarEntry>) {}

  /** Indexes `path`; throws a one-line reason when it is not a (complete) tar archive. */
  static async open (path: string): Promise<TarIndex> {
    const fh = await open(path, 'r')
    const entries = new Map<string, TarEntry>()
    try {
      const { size: fileSize } = await fh.stat()
      const block = Buffer.alloc(BLOCK)
      let pos = 0
      let pending: { name?: string, size?: number } = {}
      for (;;) {
        const { bytesRead } = await fh.read(block, 0, BLOCK, pos)
        if (bytesRead === 0) break // some writers omit the end-of-archive blocks
        if (bytesRead < BLOCK) throw new Error(`${path}: truncated tar archive (a partial header at byte ${pos})`)
        const h = decodeHeader(block)
        if (h === undefined) break
        const dataAt = pos + BLOCK
        if (dataAt + h.size > fileSize) throw new Error(`${path}: truncated tar archive (${h.name} needs ${h.size} bytes at ${dataAt}, the file has ${fileSize})`)
        if (h.type === 'pax' || h.type === 'gnu-longname') {
          const data = Buffer.alloc(h.size)
          await fh.read(data, 0, h.size, dataAt)
          if (h.type === 'gnu-longname') pending.name = data.toString('utf8').replace(/\0+$/, '')
          else {
            const pax = parsePax(data)
            if (pax.path !== undefined) pending.name = pax.path
            if (pax.size !== undefined) pending.size = Number(pax.size)
          }
        } else {
          const name = normalize(pending.name ?? h.name)
          const size = pending.size ?? h.size
          if (h.type === 'file') entries.set(name, { name, offset: dataAt, size })
          pending = {}
          pos = dataAt + Math.ceil(size / BLOCK) * BLOCK
          continue
        }
        pos = dataAt + Math.ceil(h.size / BLOCK) * BLOCK
      }
    } finally {
      await fh.close()
    }
    return new TarIndex(path, entries)
  }

  get (name: string): TarEntry | undefined {
    return this.entries.get(name)
  }

  /** A small entry read whole (index.json, manifests): refuses more than `max` bytes. */
  async read (entry: TarEntry, max = 16 << 20): Promise<Buffer> {
    if (entry.size > max) throw new Error(`${this.path}: ${entry.name} is ${entry.size} bytes, more than ${max} expected`)
    const fh = await open(this.path, 'r')
    try {
      const data = Buffer.alloc(entry.size)
      await fh.read(data, 0, entry.size, entry.offset)
      return data
    } finally {
      await fh.close()
    }
  }

  /** The entry's body as a stream (the caller owns it). */
  stream (entry: TarEntry): Readable {
    if (entry.size === 0) return Readable.from([])
    return createReadStream(this.path, { start: entry.offset, end: entry.offset + entry.size - 1, highWaterMark: 1 << 20 })
  }
}

/** `./blobs/sha256/…` and `blobs/sha256/…` are one name. */
function normalize (name: string): string {
  return name.replace(/^(\.\/)+/, '').replace(/^\/+/, '')
}
