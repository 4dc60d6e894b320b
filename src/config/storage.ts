/**
 * Where the hosted registry keeps its state: the local directory (`STORAGE=fs`, the embedded
 * default) or one S3-compatible bucket shared by every replica (`STORAGE=s3`, design §10). Parsed
 * with the rest of the configuration, so a missing bucket is one line before anything listens.
 */
import { fail, parseChoice, parseUrl } from './parse.js'

export type StorageConfig = { kind: 'fs' } | S3Config

export interface S3Config {
  kind: 's3'
  /** S3_ENDPOINT: a non-AWS server (Ceph RGW, MinIO…), addressed path-style; undefined: AWS. */
  endpoint?: URL
  bucket: string
  region: string
  /** Both or neither; neither: the AWS SDK's own credential chain (environment, profile, IMDS…). */
  accessKeyId?: string
  secretAccessKey?: string
  /** Key prefix inside the bucket, without leading or trailing `/`; '' for none. */
  prefix: string
}

// S3's bucket naming rules (lowercase, digits, dots and hyphens; 3–63; starts and ends alphanumeric).
const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/
const PREFIX_RE = /^[A-Za-z0-9!_.*'()-]+(\/[A-Za-z0-9!_.*'()-]+)*$/
const REGION_RE = /^[a-z0-9-]{1,64}$/

export function parseStorage (raw: (name: string) => string): StorageConfig {
  const kind = parseChoice('STORAGE', raw('STORAGE'), ['fs', 's3'] as const)
  if (kind === 'fs') return { kind }
  const bucket = raw('S3_BUCKET').trim()
  if (bucket === '') fail('S3_BUCKET', bucket, 'a bucket name when STORAGE=s3')
  if (!BUCKET_RE.test(bucket)) fail('S3_BUCKET', bucket, 'an S3 bucket name: 3 to 63 lowercase letters, digits, dots or hyphens')
  const endpointRaw = raw('S3_ENDPOINT').trim()
  const endpoint = endpointRaw === '' ? undefined : parseUrl('S3_ENDPOINT', endpointRaw, ['http:', 'https:'])
  if (endpoint !== undefined && (endpoint.username !== '' || endpoint.password !== '' || endpoint.search !== '')) {
    fail('S3_ENDPOINT', endpointRaw, 'a URL without credentials or query (keys go in S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY)')
  }
  const region = raw('S3_REGION').trim()
  if (!REGION_RE.test(region)) fail('S3_REGION', region, 'a region name such as us-east-1')
  const accessKeyId = raw('S3_ACCESS_KEY_ID').trim()
  const secretAccessKey = raw('S3_SECRET_ACCESS_KEY')
  if ((accessKeyId === '') !== (secretAccessKey === '')) {
    fail(accessKeyId === '' ? 'S3_ACCESS_KEY_ID' : 'S3_SECRET_ACCESS_KEY', '', 'S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY to be set together')
  }
  const prefix = raw('S3_PREFIX').trim().replace(/^\/+|\/+$/g, '')
  if (prefix !== '' && !PREFIX_RE.test(prefix)) fail('S3_PREFIX', raw('S3_PREFIX'), 'path segments of letters, digits and !_.*\'()- separated by /')
  return {
    kind,
    endpoint,
    bucket,
    region,
    ...(accessKeyId === '' ? {} : { accessKeyId, secretAccessKey }),
    prefix,
  }
}
