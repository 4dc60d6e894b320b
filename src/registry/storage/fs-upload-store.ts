/**
 * Upload sessions on the local disk, streamed, hashed on the way in, committed by rename.
 *
 *   request body ──► hash.update ──► uploads/<uuid>/data (append)        PATCH, PUT, POST ?digest=
 *                                          │ digest matches
 *                                          ▼ fdatasync, rename
 *                                    blobs/<alg>/<xx>/<hex>  + repositories/<name>/_layers link
 *
 * The session's offset is the size of its data file, and its repository and algorithm are in
 * info.json, so a session survives a restart. Node cannot serialise a hash's state, so the running
 * hash lives in memory only; when it is missing (after a restart) or cannot be trusted (a body that
 * failed midway may have been hashed further than it was written), the data file is re-hashed at
 * completion instead. A crash leaves at most an unfinished session, never a visible blob.
 */
import { createHash, randomUUID, type Hash } from 'node:crypto'
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { OciError, isStorageFull } from '../../errors.js'
import { KeyedMutex } from '../../util/keyed-mutex.js'
import type { Digest, DigestAlgorithm } from '../../oci/digest.js'
import { isUploadId } from '../../oci/names.js'
import { uploadRangeHeader } from '../../oci/range.js'
import type { BlobInfo, UploadSession, UploadStore } from './stores.js'
import type { StoragePaths } from './paths.js'
import type { FsBlobStore } from './fs-blob-store.js'
import { readIfExists, readdirIfExists, statIfExists, writeFileAtomic } from './fs-files.js'

const WRITE_HIGH_WATER_MARK = 1024 * 1024

interface SessionInfo {
  name: string
  startedAt: number
  algorithm: DigestAlgorithm
}

interface RunningHash {
  algorithm: DigestAlgorithm
  hash: Hash
  /** Bytes the hash has seen; trusted only while it equals the data file's size. */
  offset: number
}

export class FsUploadStore implements UploadStore {
  private readonly hashes = new Map<string, RunningHash>()
  private readonly mutex = new KeyedMutex()

  constructor (private readonly paths: StoragePaths, private readonly blobs: FsBlobStore) {}

  async create (name: string, opts: { algorithm?: DigestAlgorithm } = {}): Promise<UploadSession> {
    const id = randomUUID()
    const info: SessionInfo = { name, startedAt: Date.now(), algorithm: opts.algorithm ?? 'sha256' }
    this.paths.repository(name) // validates the name before anything is written
    await fsp.mkdir(this.paths.upload(id), { recursive: true })
    await fsp.writeFile(this.paths.uploadData(id), '')
    // info.json last: a session without it is unknown (and purged), never half-valid.
    await writeFileAtomic(this.paths, this.paths.uploadInfo(id), JSON.stringify(info))
    this.hashes.set(id, { algorithm: info.algorithm, hash: createHash(info.algorithm), offset: 0 })
    return { id, name, offset: 0, startedAt: info.startedAt }
  }

  async get (name: string, id: string): Promise<UploadSession | undefined> {
    if (!isUploadId(id)) return undefined
    return await this.mutex.run(id, async () => await this.read(name, id))
  }

  private async read (name: string, id: string): Promise<UploadSession | undefined> {
    const info = await this.info(name, id)
    if (info === undefined) return undefined
    const st = await statIfExists(this.paths.uploadData(id))
    if (st === undefined) return undefined
    return { id, name, offset: st.size, startedAt: info.startedAt }
  }

  async append (name: string, id: string, body: Readable, opts: { start?: number } = {}): Promise<number> {
    if (!isUploadId(id)) return unknown(body)
    return await this.mutex.run(id, async () => await this.appendLocked(name, id, body, opts.start))
  }

  async complete (name: string, id: string, digest: Digest, body?: Readable, opts: { start?: number } = {}): Promise<BlobInfo> {
    if (!isUploadId(id)) return unknown(body)
    return await this.mutex.run(id, async () => {
      const size = body !== undefined ? await this.appendLocked(name, id, body, opts.start) : (await this.read(name, id))?.offset
      if (size === undefined) throw new OciError('BLOB_UPLOAD_UNKNOWN')
      const data = this.paths.uploadData(id)
      const running = this.hashes.get(id)
      this.hashes.delete(id)
      const hex = running !== undefined && running.offset === size && running.algorithm === digest.algorithm
        ? running.hash.digest('hex')
        : await hashFile(data, digest.algorithm)
      if (hex !== digest.hex) {
        await this.remove(id)
        throw new OciError('DIGEST_INVALID', undefined, { detail: { expected: digest.value, actual: `${digest.algorithm}:${hex}` } })
      }
      // Durable before visible: after a power loss the blob is either whole or absent.
      const fh = await fsp.open(data, 'r+')
      try { await fh.datasync() } finally { await fh.close() }
      const info = await this.blobs.adopt(data, digest)
      await this.blobs.link(name, digest)
      await this.remove(id)
      return info
    })
  }

  async cancel (name: string, id: string): Promise<boolean> {
    if (!isUploadId(id)) return false
    return await this.mutex.run(id, async () => {
      if (await this.info(name, id) === undefined) return false
      await this.remove(id)
      return true
    })
  }

  async purge (olderThan: number): Promise<number> {
    let purged = 0
    for (const id of await readdirIfExists(this.paths.uploadsDir)) {
      if (!isUploadId(id)) continue
      const removed = await this.mutex.run(id, async () => {
        const times = await Promise.all([this.paths.upload(id), this.paths.uploadData(id), this.paths.uploadInfo(id)].map(statIfExists))
        const last = Math.max(0, ...times.map(st => st?.mtimeMs ?? 0))
        if (last >= olderThan) return false
        await this.remove(id)
        return true
      })
      if (removed) purged++
    }
    return purged
  }

  private async appendLocked (name: string, id: string, body: Readable, start: number | undefined): Promise<number> {
    const session = await this.read(name, id)
    if (session === undefined) return unknown(body)
    if (start !== undefined && start !== session.offset) {
      body.resume()
      // spec: end-5, chunks out of order get 416; Range tells the client where to resume.
      throw new OciError('RANGE_INVALID', 'chunk does not start at the upload offset', {
        headers: { range: uploadRangeHeader(session.offset) },
        detail: { offset: session.offset, start },
      })
    }
    let running = this.hashes.get(id)
    if (running !== undefined && running.offset !== session.offset) running = undefined
    if (running === undefined && session.offset === 0) {
      const info = await this.info(name, id)
      const algorithm = info?.algorithm ?? 'sha256'
      running = { algorithm, hash: createHash(algorithm), offset: 0 }
    }
    // Until proven otherwise the in-memory hash is stale: a failure below leaves it that way.
    this.hashes.delete(id)
    let written = 0
    const hash = running?.hash
    try {
      await pipeline(
        // Not `pipeline(body, …)`: that destroys the request on a write error, and the client sees a
        // reset instead of our answer. With destroyOnReturn false the body survives a failed write.
        async function * () {
          for await (const chunk of body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
            hash?.update(chunk)
            written += chunk.length
            yield chunk
          }
        },
        createWriteStream(this.paths.uploadData(id), { flags: 'a', highWaterMark: WRITE_HIGH_WATER_MARK }),
      )
    } catch (err) {
      // A full disk: drain what the client is still sending so it can read the 507 that says so
      // (rpardini's users saw endless "unexpected EOF" retries). Anything else: drop the request.
      if (isStorageFull(err) && !body.destroyed) body.resume()
      else body.destroy()
      throw err
    }
    const offset = session.offset + written
    if (running !== undefined) this.hashes.set(id, { ...running, offset })
    return offset
  }

  private async info (name: string, id: string): Promise<SessionInfo | undefined> {
    if (!isUploadId(id)) return undefined
    const raw = await readIfExists(this.paths.uploadInfo(id))
    if (raw === undefined) return undefined
    const info = JSON.parse(raw.toString('utf8')) as SessionInfo
    return info.name === name ? info : undefined
  }

  private async remove (id: string): Promise<void> {
    this.hashes.delete(id)
    await fsp.rm(this.paths.upload(id), { recursive: true, force: true })
  }
}

function unknown (body: Readable | undefined): never {
  body?.resume()
  throw new OciError('BLOB_UPLOAD_UNKNOWN')
}

async function hashFile (path: string, algorithm: DigestAlgorithm): Promise<string> {
  const hash = createHash(algorithm)
  for await (const chunk of createReadStream(path, { highWaterMark: WRITE_HIGH_WATER_MARK })) hash.update(chunk as Buffer)
  return hash.digest('hex')
}
