/**
 * Every key of the hosted registry's storage is built here, and only here, for both backends: the
 * directory (REGISTRY_STORAGE_DIR, where a key is a file path under the root: paths.ts) and the
 * bucket (under S3_PREFIX). Each builder validates its inputs (name, tag, upload id grammars; a
 * digest comes parsed, as `Digest`) before building anything, so no request can name a key
 * outside the layout.
 *
 *   <root>/                                 REGISTRY_STORAGE_DIR, or S3_PREFIX (several
 *   │                                       installations per bucket); '' for the bucket's root
 *   ├── blobs/<alg>/<hex[0:2]>/<hex>        content, one copy per digest, all repositories (layers,
 *   │                                       configs, manifests); appears whole only once the digest
 *   │                                       and length matched (rename; CompleteMultipartUpload) or
 *   │                                       as one write (a manifest's bytes)
 *   ├── repositories/<name>/                one level per name component (a/b/c)
 *   │   ├── _layers/<alg>/<hex>             link (body: the digest): the blob belongs to this
 *   │   │                                   repository (upload, mount, a manifest's own bytes)
 *   │   ├── _manifests/revisions/<alg>/<hex>  JSON {mediaType, size, subject?}
 *   │   ├── _manifests/tags/<tag>           body is the digest the tag points at
 *   │   └── _referrers/<alg>/<hex>/<alg>-<hex>  descriptor JSON of a manifest whose subject is
 *   │                                       <alg>:<hex> (spec: referrers API)
 *   ├── uploads/<uuid>/
 *   │   ├── info.json                       {name, startedAt, algorithm}; the session exists iff
 *   │   │                                   this exists (survives a restart)
 *   │   ├── data                            directory: the bytes received so far (append only);
 *   │   │                                   its size is the session offset
 *   │   └── parts/<start, 16 digits>        bucket: the bytes [start, start + size), one object per
 *   │                                       PATCH slice of ≤ PART_SIZE, written "if absent" so two
 *   │                                       replicas appending at one offset cannot both win; the
 *   │                                       offset is the end of the contiguous parts
 *   ├── retained/<alg>/<hex>                bucket: empty; its LastModified is when a push last
 *   │                                       referenced the blob (S3 cannot touch an object's time
 *   │                                       without copying it; the directory touches the blob's mtime)
 *   ├── sweeping/<alg>/<hex>                bucket: empty; gc is deciding whether to delete the blob
 *   │                                       (written before its last look, deleted after the delete:
 *   │                                       a push that retains the blob meanwhile waits for the verdict)
 *   └── tmp/                                directory: small files are written here, then renamed into
 *                                           place; gc parks a blob here while it decides
 *
 * Name components cannot begin with `_` (grammar), so `_layers`, `_manifests` and `_referrers`
 * never collide with a nested repository. Bytes live only in blobs/, so a blob pushed to many
 * repositories is stored once.
 */
import { OciError } from '../../errors.js'
import { assertName, isUploadId, isValidTag } from '../../oci/names.js'
import { tryParseDigest, type Digest } from '../../oci/digest.js'

/** Offsets are zero-padded so that lexical order (ListObjectsV2's) is numeric order. */
const OFFSET_WIDTH = 16

export class StorageKeys {
  /** '' or 'some/prefix/' */
  private readonly root: string

  constructor (readonly prefix: string) {
    this.root = prefix === '' ? '' : `${prefix}/`
  }

  blob (d: Digest): string {
    return `${this.root}blobs/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}`
  }

  get blobsPrefix (): string { return `${this.root}blobs/` }

  /** The digest of a key under blobsPrefix, or undefined for a key that is not ours. */
  digestOfBlobKey (key: string): Digest | undefined {
    const m = /^blobs\/([a-z0-9]+)\/[0-9a-f]{2}\/([0-9a-f]+)$/.exec(key.slice(this.root.length))
    return m === null ? undefined : tryParseDigest(`${m[1]}:${m[2]}`)
  }

  get retainedPrefix (): string { return `${this.root}retained/` }

  /** The digest of a key under retainedPrefix, or undefined for a key that is not ours. */
  digestOfRetainedKey (key: string): Digest | undefined {
    const m = /^retained\/([a-z0-9]+)\/([0-9a-f]+)$/.exec(key.slice(this.root.length))
    return m === null ? undefined : tryParseDigest(`${m[1]}:${m[2]}`)
  }

  retained (d: Digest): string {
    return `${this.root}retained/${d.algorithm}/${d.hex}`
  }

  /** gc's intent to delete a blob (s3-content-clock.ts says how pushes and gc use it). */
  sweeping (d: Digest): string {
    return `${this.root}sweeping/${d.algorithm}/${d.hex}`
  }

  repository (name: string): string {
    return `${this.root}repositories/${assertName(name)}/`
  }

  get repositoriesPrefix (): string { return `${this.root}repositories/` }

  layerLink (name: string, d: Digest): string {
    return `${this.repository(name)}_layers/${d.algorithm}/${d.hex}`
  }

  revisionsPrefix (name: string): string {
    return `${this.repository(name)}_manifests/revisions/`
  }

  revisionLink (name: string, d: Digest): string {
    return `${this.revisionsPrefix(name)}${d.algorithm}/${d.hex}`
  }

  tagsPrefix (name: string): string {
    return `${this.repository(name)}_manifests/tags/`
  }

  tagLink (name: string, tag: string): string {
    if (!isValidTag(tag)) throw new OciError('MANIFEST_INVALID', 'invalid tag', { detail: { tag: tag.slice(0, 200) } })
    return `${this.tagsPrefix(name)}${tag}`
  }

  referrersPrefix (name: string, d: Digest): string {
    return `${this.repository(name)}_referrers/${d.algorithm}/${d.hex}/`
  }

  referrerLink (name: string, subject: Digest, r: Digest): string {
    return `${this.referrersPrefix(name, subject)}${r.algorithm}-${r.hex}`
  }

  get uploadsPrefix (): string { return `${this.root}uploads/` }

  upload (id: string): string {
    if (!isUploadId(id)) throw new OciError('BLOB_UPLOAD_UNKNOWN')
    return `${this.uploadsPrefix}${id}/`
  }

  uploadInfo (id: string): string { return `${this.upload(id)}info.json` }
  uploadData (id: string): string { return `${this.upload(id)}data` }
  uploadPartsPrefix (id: string): string { return `${this.upload(id)}parts/` }

  uploadPart (id: string, start: number): string {
    if (!Number.isSafeInteger(start) || start < 0) throw new Error(`storage-keys: invalid part offset ${start}`)
    return `${this.uploadPartsPrefix(id)}${String(start).padStart(OFFSET_WIDTH, '0')}`
  }

  /** The start offset of a part key, or undefined for a key that is not a part. */
  partStart (id: string, key: string): number | undefined {
    const rest = key.slice(this.uploadPartsPrefix(id).length)
    return new RegExp(`^\\d{${OFFSET_WIDTH}}$`).test(rest) ? Number(rest) : undefined
  }

  /** Strips the prefix: the key relative to the layout root (for parsing listings). */
  relative (key: string): string {
    return key.startsWith(this.root) ? key.slice(this.root.length) : key
  }
}
