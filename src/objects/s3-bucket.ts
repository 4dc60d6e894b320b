/**
 * The few S3 operations the stores use, over one bucket, with S3's failures translated once:
 * "not found" becomes undefined/false (the store contracts' "missing"), anything else (unreachable,
 * 5xx, access denied, slow) becomes OciError UNAVAILABLE (503) with a one-line reason that names
 * the bucket and the S3 error code — never a stack, never a credential.
 *
 * Client settings, and why:
 * - requestChecksumCalculation/responseChecksumValidation 'WHEN_REQUIRED': since 3.729 the SDK
 *   adds CRC32 trailers and checksum headers to every PUT by default; Ceph RGW 16 and other
 *   non-AWS servers reject or ignore them. Integrity is ours anyway: every blob's digest is checked.
 * - forcePathStyle with S3_ENDPOINT: http://host:port/bucket/key needs no wildcard DNS.
 */
import { Readable } from 'node:stream'
import {
  S3Client, HeadBucketCommand, HeadObjectCommand, GetObjectCommand, PutObjectCommand, DeleteObjectCommand,
  ListObjectsV2Command, CreateMultipartUploadCommand, UploadPartCommand, CompleteMultipartUploadCommand,
  AbortMultipartUploadCommand, UploadPartCopyCommand, S3ServiceException, type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3'
import type { S3Config } from '../config/index.js'
import { ConfigError, OciError } from '../errors.js'

// The SDK prints a 9-line NodeVersionSupportWarning on Node 20 at the first client: that *later*
// SDK releases will need Node 22. Ours is pinned (engines: node >=20), and a multi-line stderr
// notice at every start would break "one line" start-up errors; this variable is the SDK's own
// switch (@aws-sdk/core emitWarningIfUnsupportedVersion). A write, not configuration read.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

export interface ObjectInfo {
  key: string
  size: number
  lastModified: number
  /** HEAD only: what the object was written with. */
  contentType?: string
  /** User metadata (x-amz-meta-*, names lowercased): from `head` only, never from a listing. */
  metadata?: Record<string, string>
}

export interface S3BucketOptions {
  /** Per-attempt limit on connecting, and on waiting for an answer (PROXY_READ_TIMEOUT is far too long for S3). */
  connectTimeoutMs?: number
  requestTimeoutMs?: number
}

export class S3Bucket {
  readonly name: string
  private readonly client: S3Client

  constructor (config: S3Config, opts: S3BucketOptions = {}) {
    this.name = config.bucket
    this.client = new S3Client({
      region: config.region,
      ...(config.endpoint !== undefined ? { endpoint: config.endpoint.href, forcePathStyle: true } : {}),
      ...(config.accessKeyId !== undefined && config.secretAccessKey !== undefined
        ? { credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey } }
        : {}),
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
      requestHandler: { connectionTimeout: opts.connectTimeoutMs ?? 5_000, requestTimeout: opts.requestTimeoutMs ?? 60_000 },
    })
  }

  /** Undefined when the bucket answers and takes our credentials; otherwise why not (one line). */
  async check (): Promise<string | undefined> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.name }))
      return undefined
    } catch (err) {
      return reasonOf(err, this.name)
    }
  }

  async head (key: string): Promise<ObjectInfo | undefined> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.name, Key: key }))
      return { key, size: r.ContentLength ?? 0, lastModified: toSeconds(r.LastModified), contentType: r.ContentType, metadata: r.Metadata ?? {} }
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw this.unavailable(err)
    }
  }

  async getBytes (key: string): Promise<Buffer | undefined> {
    return (await this.getObject(key))?.bytes
  }

  /** A small object read whole, with the Content-Type it was written with. */
  async getObject (key: string): Promise<{ bytes: Buffer, contentType?: string } | undefined> {
    const body = await this.getStream(key)
    if (body === undefined) return undefined
    const chunks: Buffer[] = []
    try {
      for await (const c of body.stream) chunks.push(c as Buffer)
    } catch (err) {
      throw this.unavailable(err)
    }
    return { bytes: Buffer.concat(chunks), contentType: body.contentType }
  }

  /** The object's bytes (or the inclusive range) as a stream the caller must consume or destroy. */
  async getStream (key: string, range?: { start: number, end: number }): Promise<{ stream: Readable, size: number, contentType?: string } | undefined> {
    try {
      const r = await this.client.send(new GetObjectCommand({
        Bucket: this.name,
        Key: key,
        ...(range !== undefined ? { Range: `bytes=${range.start}-${range.end}` } : {}),
      }))
      if (!(r.Body instanceof Readable)) throw new Error('GetObject returned no Node stream')
      return { stream: r.Body, size: r.ContentLength ?? 0, contentType: r.ContentType }
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw this.unavailable(err)
    }
  }

  /**
   * Writes a whole object (S3 makes it visible atomically). With `ifNoneMatch`, only when the key
   * does not exist yet: returns false, writing nothing, when it does (412).
   */
  async put (key: string, body: Buffer | string, opts: { ifNoneMatch?: boolean, contentType?: string, metadata?: Record<string, string> } = {}): Promise<boolean> {
    try {
      await this.client.send(new PutObjectCommand({
        Bucket: this.name,
        Key: key,
        Body: body,
        ContentLength: Buffer.byteLength(body),
        ...(opts.ifNoneMatch === true ? { IfNoneMatch: '*' } : {}),
        ...(opts.contentType !== undefined ? { ContentType: opts.contentType } : {}),
        ...(opts.metadata !== undefined ? { Metadata: opts.metadata } : {}),
      }))
      return true
    } catch (err) {
      if (opts.ifNoneMatch === true && statusOf(err) === 412) return false
      throw this.unavailable(err)
    }
  }

  /** Deletes the key; idempotent (S3 answers 204 whether or not it existed). */
  async delete (key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.name, Key: key }))
    } catch (err) {
      if (!isNotFound(err)) throw this.unavailable(err)
    }
  }

  /** Every object under `prefix`, in key order, page by page (1000 a request). */
  async * list (prefix: string): AsyncIterable<ObjectInfo> {
    for await (const page of this.pages(prefix)) {
      for (const o of page.Contents ?? []) {
        if (o.Key !== undefined) yield { key: o.Key, size: o.Size ?? 0, lastModified: toSeconds(o.LastModified) }
      }
    }
  }

  /** The names one level under `prefix` (which ends with '/'), as ListObjectsV2 with Delimiter '/' gives them. */
  async childPrefixes (prefix: string): Promise<string[]> {
    const out: string[] = []
    for await (const page of this.pages(prefix, '/')) {
      for (const p of page.CommonPrefixes ?? []) {
        if (p.Prefix !== undefined) out.push(p.Prefix.slice(prefix.length, -1))
      }
    }
    return out
  }

  private async * pages (prefix: string, delimiter?: string): AsyncIterable<ListObjectsV2CommandOutput> {
    let token: string | undefined
    do {
      let r
      try {
        r = await this.client.send(new ListObjectsV2Command({ Bucket: this.name, Prefix: prefix, Delimiter: delimiter, ContinuationToken: token }))
      } catch (err) {
        throw this.unavailable(err)
      }
      yield r
      token = r.IsTruncated === true ? r.NextContinuationToken : undefined
    } while (token !== undefined)
  }

  /** Whether anything exists under `prefix`. */
  async any (prefix: string): Promise<boolean> {
    try {
      const r = await this.client.send(new ListObjectsV2Command({ Bucket: this.name, Prefix: prefix, MaxKeys: 1 }))
      return (r.KeyCount ?? r.Contents?.length ?? 0) > 0
    } catch (err) {
      throw this.unavailable(err)
    }
  }

  /** Starts a multipart upload to `key`; nothing is visible there until `completeMultipart`. */
  async createMultipart (key: string, opts: { contentType?: string, metadata?: Record<string, string> } = {}): Promise<string> {
    try {
      const r = await this.client.send(new CreateMultipartUploadCommand({
        Bucket: this.name,
        Key: key,
        ...(opts.contentType !== undefined ? { ContentType: opts.contentType } : {}),
        ...(opts.metadata !== undefined ? { Metadata: opts.metadata } : {}),
      }))
      if (r.UploadId === undefined) throw new Error('CreateMultipartUpload returned no UploadId')
      return r.UploadId
    } catch (err) {
      throw this.unavailable(err)
    }
  }

  async uploadPart (key: string, uploadId: string, partNumber: number, body: Buffer): Promise<string> {
    try {
      const r = await this.client.send(new UploadPartCommand({ Bucket: this.name, Key: key, UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: body.length }))
      if (r.ETag === undefined) throw new Error('UploadPart returned no ETag')
      return r.ETag
    } catch (err) {
      throw this.unavailable(err)
    }
  }

  /** A part copied inside the store from an existing object: no byte crosses the network. */
  async uploadPartCopy (key: string, uploadId: string, partNumber: number, sourceKey: string): Promise<string> {
    try {
      const r = await this.client.send(new UploadPartCopyCommand({
        Bucket: this.name, Key: key, UploadId: uploadId, PartNumber: partNumber,
        CopySource: `${this.name}/${sourceKey.split('/').map(encodeURIComponent).join('/')}`,
      }))
      const etag = r.CopyPartResult?.ETag
      if (etag === undefined) throw new Error('UploadPartCopy returned no ETag')
      return etag
    } catch (err) {
      throw this.unavailable(err)
    }
  }

  async completeMultipart (key: string, uploadId: string, etags: string[]): Promise<void> {
    try {
      await this.client.send(new CompleteMultipartUploadCommand({
        Bucket: this.name,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      }))
    } catch (err) {
      throw this.unavailable(err)
    }
  }

  /** Best effort: a multipart upload left behind is invisible and expires by the bucket's lifecycle. */
  async abortMultipart (key: string, uploadId: string): Promise<void> {
    await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.name, Key: key, UploadId: uploadId })).catch(() => {})
  }

  destroy (): void {
    this.client.destroy()
  }

  unavailable (err: unknown): OciError {
    if (err instanceof OciError) return err
    return new OciError('UNAVAILABLE', `object storage unavailable: ${reasonOf(err, this.name)}`)
  }
}

/**
 * `bucket` (by default a new client for `config`) once it answers and takes our credentials;
 * otherwise it is destroyed and a ConfigError says why in one line, without a secret — callers open
 * it before anything listens. The caller owns the result (destroys it).
 */
export async function openS3Bucket (config: S3Config, opts: S3BucketOptions = {}, bucket = new S3Bucket(config, opts)): Promise<S3Bucket> {
  const reason = await bucket.check()
  if (reason === undefined) return bucket
  bucket.destroy()
  const where = config.endpoint !== undefined ? ` at ${config.endpoint.origin}` : ''
  throw new ConfigError(`STORAGE=s3: cannot use S3_BUCKET=${JSON.stringify(config.bucket)}${where}: ${reason}; expected an existing bucket that S3_ACCESS_KEY_ID may read and write`)
}

/**
 * Whole seconds, as epoch ms: HEAD's Last-Modified has second resolution while a listing may carry
 * milliseconds, and gc compares the two (a blob listed at .500 must not look older on HEAD).
 */
function toSeconds (date: Date | undefined): number {
  return date === undefined ? 0 : Math.floor(date.getTime() / 1000) * 1000
}

function statusOf (err: unknown): number | undefined {
  return err instanceof S3ServiceException ? err.$metadata?.httpStatusCode : undefined
}

function isNotFound (err: unknown): boolean {
  const name = (err as { name?: string }).name
  return name === 'NoSuchKey' || name === 'NotFound' || (statusOf(err) === 404 && name !== 'NoSuchBucket')
}

const BODYLESS = new Set(['NotFound', 'Forbidden', 'Unknown', 'BadRequest', 'MovedPermanently'])
const STATUS_CODES: Record<number, string> = {
  301: 'PermanentRedirect (the bucket is in another region: S3_REGION)',
  400: 'BadRequest',
  403: 'AccessDenied (wrong S3_ACCESS_KEY_ID/S3_SECRET_ACCESS_KEY, or no permission on the bucket)',
  404: 'NoSuchBucket',
}

/** One line: the S3 error code and status, or the network error code; no stack, no credentials. */
export function reasonOf (err: unknown, bucket: string): string {
  if (err instanceof S3ServiceException) {
    const status = err.$metadata?.httpStatusCode
    // HEAD answers have no body, so the SDK names them 'NotFound', 'Forbidden' or 'Unknown': the
    // status says more. A 403 is wrong keys as often as a missing permission.
    const code = BODYLESS.has(err.name) && status !== undefined && STATUS_CODES[status] !== undefined ? STATUS_CODES[status] : err.name
    return `bucket ${bucket}: ${code}${status !== undefined ? ` (HTTP ${status})` : ''}`
  }
  const e = err as { code?: string, name?: string, message?: string }
  const code = e.code ?? e.name ?? 'Error'
  return `bucket ${bucket}: ${code}${e.message !== undefined && e.message !== '' ? `: ${e.message.split('\n')[0].slice(0, 200)}` : ''}`
}
