/**
 * Writes a tar archive to a stream, one entry after another, with backpressure: an entry's body is
 * piped through (never buffered whole), its length checked against the header's, and an optional
 * `through` transform (a digest check) sees every byte on the way.
 */
import { once } from 'node:events'
import type { Readable, Writable } from 'node:stream'
import { END_OF_ARCHIVE, encodeHeader, padding } from './tar-format.js'

export class TarWriter {
  private written = 0

  constructor (private readonly out: Writable) {}

  /** Bytes written to the archive so far. */
  get position (): number {
    return this.written
  }

  async directory (name: string): Promise<void> {
    await this.write(encodeHeader(name.endsWith('/') ? name : `${name}/`, 0, 'directory'))
  }

  async file (name: string, data: Buffer): Promise<void> {
    await this.write(encodeHeader(name, data.length))
    await this.write(data)
    await this.write(padding(data.length))
  }

  /**
   * An entry of `size` bytes read from `body`; rejects (the archive is then unusable) when the body
   * fails or its length is not `size`. `onChunk` sees each chunk (progress, hashing).
   */
  async stream (name: string, size: number, body: Readable, onChunk?: (chunk: Buffer) => void): Promise<void> {
    await this.write(encodeHeader(name, size))
    let got = 0
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        got += chunk.length
        if (got > size) throw new Error(`${name}: more than the ${size} bytes announced`)
        onChunk?.(chunk)
        await this.write(chunk)
      }
    } finally {
      if (!body.destroyed) body.destroy()
    }
    if (got !== size) throw new Error(`${name}: ${got} bytes where ${size} were announced`)
    await this.write(padding(size))
  }

  /** Ends the archive (two zero blocks) and the stream; resolves once everything is flushed. */
  async finish (): Promise<void> {
    await this.write(END_OF_ARCHIVE)
    this.out.end()
    if (!this.out.writableFinished) await once(this.out, 'finish')
  }

  private async write (data: Buffer): Promise<void> {
    if (data.length === 0) return
    this.written += data.length
    if (!this.out.write(data)) await once(this.out, 'drain')
  }
}
