/**
 * Upload sessions over the object primitive, for both backends: the session record
 * (uploads/<id>/info.json, written last at create, deleted first at the end: a session exists iff
 * it does), the per-session mutex, the offset check, the running hash, verification, then link.
 *
 *   POST  ──► bytes.create, info.json
 *   PATCH ──► offset check ──► body ──► running hash ──► bytes.append (at the session offset)
 *   PUT   ──► (final PATCH) ──► bytes.publish(digest, hash if trusted): verified, then visible
 *             atomically under blobs/ ──► link into the repository ──► session gone
 *
 * Where the bytes wait is the backends' real difference (`UploadBytes`, upload-bytes.ts): the
 * directory appends to one file and renames it into place; a bucket cannot append, so each PATCH
 * slice is an object and the PUT assembles them inside the store. Node cannot save a hash's state,
 * so the running hash lives in this process's memory, trusted only while the offset it has seen
 * equals the session's (another replica appended, a body failed midway, a restart: it is dropped
 * and `publish` re-reads the bytes instead). A crash leaves at most an unfinished session, never a
 * visible blob.
 */
import { createHash, randomUUID, type Hash } from 'node:crypto'
import type { Readable } from 'node:stream'
import { OciError, isStorageFull } from '../../errors.js'
import { KeyedMutex } from '../../util/keyed-mutex.js'
import type { Digest, DigestAlgorithm } from '../../oci/digest.js'
import { isUploadId } from '../../oci/names.js'
import type { ObjectStore } from '../../objects/object-store.js'
import type { BlobInfo, UploadSession, UploadStore } from './stores.js'
import type { StorageKeys } from './storage-keys.js'
import type { ObjectBlobStore } from './object-blob-store.js'
import { rangeInvalid, type UploadBytes } from './upload-bytes.js'

interface SessionInfo {
  name: string
  startedAt: number
  algorithm: DigestAlgorithm
}

interface RunningHash {
  algorithm: DigestAlgorithm
  hash: Hash
  /** Bytes the hash has seen; trusted only while it equals the session's offset. */
  offset: number
}

export class ObjectUploadStore implements UploadStore {
  private readonly hashes = new Map<string, RunningHash>()
  private readonly mutex = new KeyedMutex()

  constructor (
    private readonly objects: ObjectStore,
    private readonly keys: StorageKeys,
    private readonly blobs: ObjectBlobStore,
    private readonly bytes: UploadBytes,
  ) {}

  async create (name: string, opts: { algorithm?: DigestAlgorithm } = {}): Promise<UploadSession> {
    const id = randomUUID()
    const info: SessionInfo = { name, startedAt: Date.now(), algorithm: opts.algorithm ?? 'sha256' }
    this.keys.repository(name) // validates the name before anything is written
    await this.bytes.create(id)
    // info.json last: a session without it is unknown (and purged), never half-valid.
    await this.objects.write(this.keys.uploadInfo(id), JSON.stringify(info))
    this.hashes.set(id, { algorithm: info.algorithm, hash: createHash(info.algorithm), offset: 0 })
    return { id, name, offset: 0, startedAt: info.startedAt }
  }

  async get (name: string, id: string): Promise<UploadSession | undefined> {
    if (!isUploadId(id)) return undefined
    return await this.mutex.run(id, async () => await this.read(name, id))
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
      const running = this.hashes.get(id)
      this.hashes.delete(id)
      const known = running !== undefined && running.offset === size && running.algorithm === digest.algorithm
        ? running.hash.digest('hex')
        : undefined
      const hex = await this.bytes.publish(id, digest, known)
      if (hex !== digest.hex) {
        await this.remove(id)
        throw new OciError('DIGEST_INVALID', undefined, { detail: { expected: digest.value, actual: `${digest.algorithm}:${hex}` } })
      }
      let info = await this.blobs.link(name, digest)
      // The content was there already, so `publish` kept it, and gc took it just now (it was
      // unreferenced and old): the session still holds the bytes, publish ours.
      if (info === undefined && await this.bytes.publish(id, digest, digest.hex) === digest.hex) info = await this.blobs.link(name, digest)
      if (info === undefined) throw new OciError('BLOB_UPLOAD_UNKNOWN', 'the blob was removed while the upload completed; retry the upload')
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
    for await (const { id, touchedAt } of this.bytes.sessions()) {
      if (touchedAt >= olderThan) continue
      await this.mutex.run(id, async () => { await this.remove(id) })
      purged++
    }
    return purged
  }

  private async read (name: string, id: string): Promise<UploadSession | undefined> {
    const info = await this.info(name, id)
    if (info === undefined) return undefined
    const offset = await this.bytes.size(id)
    return offset === undefined ? undefined : { id, name, offset, startedAt: info.startedAt }
  }

  private async appendLocked (name: string, id: string, body: Readable, start: number | undefined): Promise<number> {
    const session = await this.read(name, id)
    if (session === undefined) return unknown(body)
    if (start !== undefined && start !== session.offset) {
      body.resume()
      throw rangeInvalid(session.offset, start)
    }
    let running = this.hashes.get(id)
    if (running !== undefined && running.offset !== session.offset) running = undefined
    if (running === undefined && session.offset === 0) {
      const algorithm = (await this.info(name, id))?.algorithm ?? 'sha256'
      running = { algorithm, hash: createHash(algorithm), offset: 0 }
    }
    // Until proven otherwise the in-memory hash is stale: a failure below leaves it that way.
    this.hashes.delete(id)
    const hash = running?.hash
    let offset: number
    try {
      // Not `pipeline(body, …)`: that destroys the request on a write error, and the client sees a
      // reset instead of our answer. With destroyOnReturn false the body survives a failed write.
      offset = await this.bytes.append(id, session.offset, (async function * () {
        for await (const chunk of body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
          hash?.update(chunk)
          yield chunk
        }
      })())
    } catch (err) {
      // A full disk, or another replica appended here first: drain what the client is still
      // sending so it can read the answer that says so (rpardini's users saw endless "unexpected
      // EOF" retries on a full disk). Anything else (the client went away): drop the request.
      if ((isStorageFull(err) || (err instanceof OciError && err.code === 'RANGE_INVALID')) && !body.destroyed) body.resume()
      else body.destroy()
      throw err
    }
    if (running !== undefined) this.hashes.set(id, { ...running, offset })
    return offset
  }

  private async info (name: string, id: string): Promise<SessionInfo | undefined> {
    if (!isUploadId(id)) return undefined
    const raw = await this.objects.read(this.keys.uploadInfo(id))
    if (raw === undefined) return undefined
    const info = JSON.parse(raw.toString('utf8')) as SessionInfo
    return info.name === name ? info : undefined
  }

  private async remove (id: string): Promise<void> {
    this.hashes.delete(id)
    // info.json first: from then on the session is unknown, whatever deletions of its bytes still fail.
    await this.objects.delete(this.keys.uploadInfo(id))
    await this.bytes.remove(id)
  }
}

function unknown (body: Readable | undefined): never {
  body?.resume()
  throw new OciError('BLOB_UPLOAD_UNKNOWN')
}
