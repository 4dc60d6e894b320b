/**
 * The hosted registry's directory (REGISTRY_STORAGE_DIR) is the key layout of storage-keys.ts
 * (drawn there) with each key a file under the root: blobs/<alg>/<hex[0:2]>/<hex>,
 * repositories/<name>/_layers|_manifests|_referrers/…, uploads/<uuid>/{info.json,data}, tmp/.
 * This maps the builders to paths, for what only the directory does with a path (append to an
 * upload's data file, park a blob by rename, walk blobs/ for gc) and for tools and tests that
 * look at the disk. The keys validate their inputs, so no request can name a file outside the tree.
 */
import { join } from 'node:path'
import { DIGEST_ALGORITHMS, type Digest } from '../../oci/digest.js'
import { FsObjects } from '../../objects/fs-objects.js'
import { StorageKeys } from './storage-keys.js'

export class StoragePaths {
  readonly keys = new StorageKeys('')
  readonly objects: FsObjects

  constructor (readonly root: string) {
    this.objects = new FsObjects(root)
  }

  private file (key: string): string { return this.objects.path(key.replace(/\/$/, '')) }

  get blobsDir (): string { return join(this.root, 'blobs') }
  get repositoriesDir (): string { return join(this.root, 'repositories') }
  get uploadsDir (): string { return join(this.root, 'uploads') }
  get tmpDir (): string { return this.objects.tmpDir }

  blob (d: Digest): string { return this.file(this.keys.blob(d)) }

  /** The directory of one algorithm's blobs (gc walks it). */
  blobAlgorithmDir (algorithm: string): string {
    if (!Object.hasOwn(DIGEST_ALGORITHMS, algorithm)) throw new Error(`paths: unknown algorithm ${algorithm}`)
    return join(this.blobsDir, algorithm)
  }

  repository (name: string): string { return this.file(this.keys.repository(name)) }
  layerLink (name: string, d: Digest): string { return this.file(this.keys.layerLink(name, d)) }
  revisionLink (name: string, d: Digest): string { return this.file(this.keys.revisionLink(name, d)) }
  tagLink (name: string, tag: string): string { return this.file(this.keys.tagLink(name, tag)) }
  referrersDir (name: string, d: Digest): string { return this.file(this.keys.referrersPrefix(name, d)) }
  referrerLink (name: string, subject: Digest, r: Digest): string { return this.file(this.keys.referrerLink(name, subject, r)) }
  upload (id: string): string { return this.file(this.keys.upload(id)) }
  uploadData (id: string): string { return this.file(this.keys.uploadData(id)) }
  uploadInfo (id: string): string { return this.file(this.keys.uploadInfo(id)) }

  /** A fresh, unique file name in tmp/ (same filesystem as everything else, so rename is atomic). */
  tmpFile (label = 'w'): string { return this.objects.tmpFile(label) }
}
