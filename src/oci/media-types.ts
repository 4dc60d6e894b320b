/**
 * Manifest media types (image-spec manifest.md, image-index.md; Docker image manifest v2 schema 2
 * and manifest list), and the one way to read a media type out of a Content-Type header.
 */

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const

/** An Accept header asking for any manifest kind we know (indexes first, as docker sends them). */
export const MANIFEST_ACCEPT = [MEDIA_TYPES.ociIndex, MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifestList, MEDIA_TYPES.dockerManifest].join(', ')

/** The media type of a Content-Type header without parameters, lower-cased; undefined when absent/empty. */
export function mediaTypeOf (contentType: string | string[] | undefined): string | undefined {
  const first = Array.isArray(contentType) ? contentType[0] : contentType
  const t = first?.split(';')[0].trim().toLowerCase()
  return t === undefined || t === '' ? undefined : t
}
