/**
 * An upload's bytes in the directory: one file, uploads/<id>/data, appended to; its size is the
 * offset. The PUT makes it durable (fdatasync) and renames it into blobs/: the bytes are written
 * once and never copied, which keeps a local push at disk speed.
 *
 *   body ──► (running hash) ──► uploads/<uuid>/data (append) ──digest matches──► fdatasync, rename
 *                                                                               ──► blobs/<alg>/<xx>/<hex>
 */
import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs'
import { pipeline } from 'node:stream/promises'
import type { Digest, DigestAlgorithm } from '../../oci/digest.js'
import { isUploadId } from '../../oci/names.js'
import { readdirIfExists, renameInto, statIfExists } from '../../objects/fs-files.js'
import type { StoragePaths } from './paths.js'
import type { UploadBytes } from './upload-bytes.js'

const WRITE_HIGH_WATER_MARK = 1024 * 1024

export class FsUploadBytes implements UploadBytes {
  constructor (private readonly paths: StoragePaths) {}

  async create (id: string): Promise<void> {
    await fsp.mkdir(this.paths.upload(id), { recursive: true })
    await fsp.writeFile(this.paths.uploadData(id), '')
  }

  async size (id: string): Promise<number | undefined> {
    return (await statIfExists(this.paths.uploadData(id)))?.size
  }

  async append (id: string, offset: number, chunks: AsyncIterable<Buffer>): Promise<number> {
    let written = 0
    await pipeline(
      async function * () {
        for await (const chunk of chunks) {
          written += chunk.length
          yield chunk
        }
      },
      createWriteStream(this.paths.uploadData(id), { flags: 'a', highWaterMark: WRITE_HIGH_WATER_MARK }),
    )
    return offset + written
  }

  async publish (id: string, digest: Digest, knownHex: string | undefined): Promise<string> {
    const data = this.paths.uploadData(id)
    const hex = knownHex ?? await hashFile(data, digest.algorithm)
    if (hex !== digest.hex) return hex
    const target = this.paths.blob(digest)
    const now = new Date()
    try {
      await fsp.utimes(target, now, now) // a concurrent push of the same blob: keep theirs, retained now
      return hex
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    // Durable before visible: after a power loss the blob is either whole or absent.
    const fh = await fsp.open(data, 'r+')
    try { await fh.datasync() } finally { await fh.close() }
    await fsp.utimes(data, now, now)
    await renameInto(data, target)
    return hex
  }

  async remove (id: string): Promise<void> {
    await fsp.rm(this.paths.upload(id), { recursive: true, force: true })
  }

  async * sessions (): AsyncIterable<{ id: string, touchedAt: number }> {
    for (const id of await readdirIfExists(this.paths.uploadsDir)) {
      if (!isUploadId(id)) continue
      // The directory's own time too: a session whose files are not written yet is young, not stale.
      const times = await Promise.all([this.paths.upload(id), this.paths.uploadData(id), this.paths.uploadInfo(id)].map(statIfExists))
      yield { id, touchedAt: Math.max(0, ...times.map(st => st?.mtimeMs ?? 0)) }
    }
  }
}

async function hashFile (path: string, algorithm: DigestAlgorithm): Promise<string> {
  const hash = createHash(algorithm)
  for await (const chunk of createReadStream(path, { highWaterMark: WRITE_HIGH_WATER_MARK })) hash.update(chunk as Buffer)
  return hash.digest('hex')
}
