/**
 * Blobs over the object primitive, for both backends: bytes once per digest under blobs/, a link
 * object per repository under `_layers/` (layout in storage-keys.ts). Whether a repository sees a
 * blob is decided by its link; the content is shared.
 *
 * gc's clock — when content was last written or retained — is the one thing the backends keep
 * differently, so it is a strategy (`ContentClock`): the directory touches the blob file's mtime
 * and decides a removal by parking the file (atomic against a touch); a bucket cannot change an
 * object's time without rewriting it (a 10 GB self-copy per push that references a layer is no
 * option), so it writes a retained/ marker next to it.
 */
import type { Writable } from 'node:stream'
import type { ByteRange } from '../../oci/range.js'
import type { Digest } from '../../oci/digest.js'
import type { ObjectStore } from '../../objects/object-store.js'
import type { BlobInfo, BlobStore, StoredBlob } from './stores.js'
import type { StorageKeys } from './storage-keys.js'

export interface ContentClock {
  /** Marks the content of `digest` as in use now; its size, or undefined (nothing marked) when absent. */
  retain: (digest: Digest) => Promise<number | undefined>
  /** BlobStore.list: every stored blob with the time it was last written or retained. */
  list: () => AsyncIterable<StoredBlob>
  /** BlobStore.remove: deletes the content unless written or retained at or after `keepIfModifiedSince`. */
  remove: (digest: Digest, keepIfModifiedSince: number) => Promise<boolean>
}

export class ObjectBlobStore implements BlobStore {
  constructor (private readonly objects: ObjectStore, private readonly keys: StorageKeys, private readonly clock: ContentClock) {}

  async stat (name: string, digest: Digest, opts: { retain?: boolean } = {}): Promise<BlobInfo | undefined> {
    if (await this.objects.head(this.keys.layerLink(name, digest)) === undefined) return undefined
    const size = opts.retain === true ? await this.clock.retain(digest) : (await this.objects.head(this.keys.blob(digest)))?.size
    return size === undefined ? undefined : { digest: digest.value, size }
  }

  async send (digest: Digest, out: Writable, opts: { range?: ByteRange, ready?: () => void } = {}): Promise<boolean> {
    return await this.objects.send(this.keys.blob(digest), out, opts)
  }

  async link (name: string, digest: Digest): Promise<BlobInfo | undefined> {
    const size = await this.clock.retain(digest)
    if (size === undefined) return undefined
    const link = this.keys.layerLink(name, digest)
    if (await this.objects.head(link) === undefined) await this.objects.write(link, digest.value)
    return { digest: digest.value, size }
  }

  async unlink (name: string, digest: Digest): Promise<boolean> {
    return await this.objects.delete(this.keys.layerLink(name, digest))
  }

  /** Writes small content (a manifest's bytes) once per digest; retains it when already there. */
  async putBytes (digest: Digest, bytes: Buffer): Promise<void> {
    if (await this.clock.retain(digest) !== undefined) return
    await this.objects.write(this.keys.blob(digest), bytes)
  }

  /** The content's size without retaining it; undefined when absent. */
  async contentInfo (digest: Digest): Promise<BlobInfo | undefined> {
    const o = await this.objects.head(this.keys.blob(digest))
    return o === undefined ? undefined : { digest: digest.value, size: o.size }
  }

  list (): AsyncIterable<StoredBlob> {
    return this.clock.list()
  }

  async remove (digest: Digest, keepIfModifiedSince: number): Promise<boolean> {
    return await this.clock.remove(digest, keepIfModifiedSince)
  }
}
