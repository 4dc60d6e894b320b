/**
 * What a pushed manifest must be before we store it (spec: end-7; image-spec manifest.md and
 * image-index.md; Docker image manifest v2 schema 2 and manifest list). Parses the JSON, checks the
 * media type against the body and the Content-Type, and collects the descriptors whose targets must
 * already be in the repository. Pure: no storage here; the handler checks existence.
 */
import { OciError } from '../errors.js'
import { parseDigest, type Digest } from '../oci/digest.js'
import { MEDIA_TYPES, mediaTypeOf } from '../oci/media-types.js'
import type { Descriptor } from './storage/stores.js'

/** spec (end-7): registries SHOULD accept manifests of at least 4 MiB; larger ones get 413. */
export const MANIFEST_MAX_BYTES = 4 * 1024 * 1024

const IMAGE_TYPES = new Set<string>([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest])
const INDEX_TYPES = new Set<string>([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList])

// Layers a registry is not expected to hold (image-spec "non-distributable", Docker foreign layers):
// they carry `urls` and are fetched from there.
const FOREIGN_LAYER = /(foreign|nondistributable)/

/** A descriptor as pushed, with its digest parsed once here (`target`) for the stores. */
export type ParsedDescriptor = Descriptor & { target: Digest }

export interface ParsedManifest {
  mediaType: string
  /** Config and layers: must exist as blobs in the repository. */
  blobs: ParsedDescriptor[]
  /** An index's entries: must exist as manifests in the repository. */
  manifests: ParsedDescriptor[]
  subject?: ParsedDescriptor
  /** What the referrers API lists this manifest as (spec: artifactType, else config.mediaType). */
  artifactType?: string
  annotations?: Record<string, string>
}

function invalid (reason: string, detail: Record<string, unknown> = {}): OciError {
  return new OciError('MANIFEST_INVALID', `manifest invalid: ${reason}`, { detail: { reason, ...detail } })
}

export function parseManifest (body: Buffer, contentType: string | undefined): ParsedManifest {
  let json: any
  try {
    json = JSON.parse(body.toString('utf8'))
  } catch (err) {
    throw invalid('malformed JSON', { error: (err as Error).message })
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw invalid('not a JSON object')
  if (json.schemaVersion !== 2) throw invalid('schemaVersion must be 2 (schema 1 manifests are not supported)')

  const declared = mediaTypeOf(contentType)
  const inBody: unknown = json.mediaType
  if (inBody !== undefined && typeof inBody !== 'string') throw invalid('mediaType must be a string')
  // spec: the body's mediaType, when present, must match the Content-Type it was pushed with.
  if (inBody !== undefined && declared !== undefined && inBody !== declared) {
    throw invalid('mediaType in the body does not match Content-Type', { mediaType: inBody, contentType: declared })
  }
  const mediaType = (inBody as string | undefined) ?? declared ?? (Array.isArray(json.manifests) ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.ociManifest)
  if (!IMAGE_TYPES.has(mediaType) && !INDEX_TYPES.has(mediaType)) throw invalid('unsupported manifest media type', { mediaType })

  const subject = json.subject === undefined ? undefined : descriptor(json.subject, 'subject')
  const annotations = stringMap(json.annotations, 'annotations')
  if (json.artifactType !== undefined && typeof json.artifactType !== 'string') throw invalid('artifactType must be a string')

  if (IMAGE_TYPES.has(mediaType)) {
    if (json.manifests !== undefined) throw invalid('an image manifest has no manifests field')
    const config = descriptor(json.config, 'config')
    if (!Array.isArray(json.layers)) throw invalid('layers must be an array')
    const layers = (json.layers as unknown[]).map((l, i) => descriptor(l, `layers[${i}]`))
    const blobs = [config, ...layers.filter(l => !(FOREIGN_LAYER.test(l.mediaType) && Array.isArray((l as any).urls)))]
    return { mediaType, blobs, manifests: [], subject, artifactType: json.artifactType ?? config.mediaType, annotations }
  }
  if (json.layers !== undefined || json.config !== undefined) throw invalid('an index has no config or layers')
  if (!Array.isArray(json.manifests)) throw invalid('manifests must be an array')
  const manifests = (json.manifests as unknown[]).map((m, i) => descriptor(m, `manifests[${i}]`))
  return { mediaType, blobs: [], manifests, subject, artifactType: json.artifactType, annotations }
}

function descriptor (value: any, where: string): ParsedDescriptor & { urls?: unknown } {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalid(`${where} must be a descriptor`)
  if (typeof value.mediaType !== 'string' || value.mediaType === '') throw invalid(`${where}.mediaType must be a string`)
  if (typeof value.digest !== 'string') throw invalid(`${where}.digest must be a string`)
  let target: Digest
  try {
    target = parseDigest(value.digest)
  } catch {
    throw invalid(`${where}.digest is not a valid digest`, { digest: String(value.digest).slice(0, 200) })
  }
  if (!Number.isSafeInteger(value.size) || value.size < 0) throw invalid(`${where}.size must be a non-negative integer`)
  return { mediaType: value.mediaType, digest: value.digest, target, size: value.size, ...(value.urls !== undefined ? { urls: value.urls } : {}) }
}

function stringMap (value: unknown, where: string): Record<string, string> | undefined {
  if (value === undefined) return undefined
  if (value === null || typeof value !== 'object' || Array.isArray(value) || Object.values(value).some(v => typeof v !== 'string')) {
    throw invalid(`${where} must map strings to strings`)
  }
  return value as Record<string, string>
}
