/**
 * Every path of the hosted registry's storage is built here, and only here. Each builder validates
 * its inputs (repository name grammar, tag grammar, upload ids we minted) before joining anything,
 * so no request can name a file outside the tree. Digests come as `Digest`, which only
 * oci/digest.ts makes, after checking algorithm and hex: they are used as they are.
 *
 *   <root>/                                          REGISTRY_STORAGE_DIR
 *   ├── blobs/                                       content, one copy per digest, all repositories
 *   │   └── <alg>/<hex[0:2]>/<hex>                   the bytes (layers, configs and manifests alike);
 *   │                                                appears only by rename once the digest matched
 *   ├── repositories/
 *   │   └── <name>/                                  one directory per name component (a/b/c)
 *   │       ├── _layers/<alg>/<hex>                  link: the blob belongs to this repository
 *   │       │                                        (upload, mount, or a manifest's own bytes)
 *   │       ├── _manifests/
 *   │       │   ├── revisions/<alg>/<hex>            link: manifest in this repository, JSON
 *   │       │   │                                    {mediaType, size, subject?}
 *   │       │   └── tags/<tag>                       link: the digest the tag points at
 *   │       └── _referrers/<alg>/<hex>/<alg>-<hex>   descriptor (JSON) of a manifest whose subject is
 *   │                                                <alg>:<hex> (spec: referrers API)
 *   ├── uploads/
 *   │   └── <uuid>/
 *   │       ├── data                                 bytes received so far (append only); its size
 *   │       │                                        is the session offset
 *   │       └── info.json                            {name, startedAt, algorithm}: survives a restart
 *   └── tmp/                                         small files are written here, then renamed into
 *                                                    place; gc parks a blob here while it decides
 *
 * Name components cannot begin with `_` (grammar), so `_layers`, `_manifests` and `_referrers`
 * never collide with a nested repository. Everything under repositories/ is a link or a small JSON
 * file; bytes live only in blobs/, so a blob pushed to many repositories is stored once.
 */
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { OciError } from '../../errors.js'
import { DIGEST_ALGORITHMS, type Digest } from '../../oci/digest.js'
import { assertName, isValidTag, isUploadId } from '../../oci/names.js'

export class StoragePaths {
  readonly root: string

  constructor (root: string) {
    this.root = root
  }

  get blobsDir (): string { return join(this.root, 'blobs') }
  get repositoriesDir (): string { return join(this.root, 'repositories') }
  get uploadsDir (): string { return join(this.root, 'uploads') }
  get tmpDir (): string { return join(this.root, 'tmp') }

  /** The bytes of a blob. */
  blob (d: Digest): string {
    return join(this.root, 'blobs', d.algorithm, d.hex.slice(0, 2), d.hex)
  }

  /** The directory of one algorithm's blobs (gc walks it). */
  blobAlgorithmDir (algorithm: string): string {
    if (!Object.hasOwn(DIGEST_ALGORITHMS, algorithm)) throw new Error(`paths: unknown algorithm ${algorithm}`)
    return join(this.root, 'blobs', algorithm)
  }

  repository (name: string): string {
    return join(this.root, 'repositories', ...assertName(name).split('/'))
  }

  layerLink (name: string, d: Digest): string {
    return join(this.repository(name), '_layers', d.algorithm, d.hex)
  }

  manifestsDir (name: string): string {
    return join(this.repository(name), '_manifests')
  }

  revisionsDir (name: string): string {
    return join(this.manifestsDir(name), 'revisions')
  }

  revisionLink (name: string, d: Digest): string {
    return join(this.revisionsDir(name), d.algorithm, d.hex)
  }

  tagsDir (name: string): string {
    return join(this.manifestsDir(name), 'tags')
  }

  tagLink (name: string, tag: string): string {
    if (!isValidTag(tag)) throw new OciError('MANIFEST_INVALID', 'invalid tag', { detail: { tag: tag.slice(0, 200) } })
    return join(this.tagsDir(name), tag)
  }

  referrersDir (name: string, d: Digest): string {
    return join(this.repository(name), '_referrers', d.algorithm, d.hex)
  }

  referrerLink (name: string, subject: Digest, r: Digest): string {
    return join(this.referrersDir(name, subject), `${r.algorithm}-${r.hex}`)
  }

  upload (id: string): string {
    if (!isUploadId(id)) throw new OciError('BLOB_UPLOAD_UNKNOWN')
    return join(this.root, 'uploads', id)
  }

  uploadData (id: string): string { return join(this.upload(id), 'data') }
  uploadInfo (id: string): string { return join(this.upload(id), 'info.json') }

  /**
   * A fresh, unique file name in tmp/ (same filesystem as everything else, so rename is atomic).
   * `label` is checked like every other input, so no caller can turn it into a traversal.
   */
  tmpFile (label = 'w'): string {
    if (!/^[a-z0-9-]{1,32}$/.test(label)) throw new Error(`paths: invalid tmp label ${JSON.stringify(label.slice(0, 40))}`)
    return join(this.root, 'tmp', `${label}-${process.pid}-${randomBytes(8).toString('hex')}`)
  }
}
