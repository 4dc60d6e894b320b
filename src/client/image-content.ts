/**
 * An image as a registry door serves it: a reference on that door (`docker.io/library/alpine:3.20`
 * names the pull-through namespace, `team/app:1` a hosted repository, exactly as `docker pull
 * <door>/<reference>` would), and everything a pull of every platform reads: the root manifest, each
 * platform manifest of an index, and the config and layer blobs of each.
 *
 * Manifests are small (the spec's 4 MiB cap) and are held in memory, verified against their digest
 * as they arrive; blobs are only listed here (their bytes are streamed by whoever copies them).
 */
import { createHash } from 'node:crypto'
import type { OciError } from '../errors.js'
import { isValidName, isValidTag } from '../oci/names.js'
import { parseDigest } from '../oci/digest.js'
import { parseManifest } from '../registry/manifest-validation.js'
import type { Descriptor } from '../registry/storage/stores.js'
import { ClientError, type RegistryClient } from './registry-client.js'

export interface ImageReference {
  /** The repository name on the door (`docker.io/library/alpine`, `team/app`). */
  name: string
  /** A tag or a digest. */
  reference: string
  /** `name:tag` or `name@digest`, as given (normalised). */
  text: string
}

/** Parses `name[:tag]` or `name@digest` (tag `latest` when neither); throws a one-line reason. */
export function parseImageReference (text: string): ImageReference {
  const at = text.indexOf('@')
  let name: string
  let reference: string
  if (at >= 0) {
    name = text.slice(0, at)
    reference = text.slice(at + 1)
    try { parseDigest(reference) } catch (err) { throw new Error(`bad image reference ${JSON.stringify(text)}: ${(err as OciError).message}`) }
  } else {
    const colon = text.lastIndexOf(':')
    const hasTag = colon > text.lastIndexOf('/')
    name = hasTag ? text.slice(0, colon) : text
    reference = hasTag ? text.slice(colon + 1) : 'latest'
    if (!isValidTag(reference)) throw new Error(`bad image reference ${JSON.stringify(text)}: ${JSON.stringify(reference)} is not a tag (letters, digits, _ . -, at most 128)`)
  }
  if (!isValidName(name)) throw new Error(`bad image reference ${JSON.stringify(text)}: ${JSON.stringify(name)} is not a repository name (lowercase components joined by /, e.g. docker.io/library/alpine:3.20)`)
  return { name, reference, text: at >= 0 ? `${name}@${reference}` : `${name}:${reference}` }
}

export interface ManifestContent extends Descriptor {
  bytes: Buffer
}

export interface ImageContent {
  ref: ImageReference
  root: ManifestContent
  /** The root first, then each platform manifest of an index. */
  manifests: ManifestContent[]
  /** Config and layer blobs of every platform, each digest once. */
  blobs: Descriptor[]
}

/** Hashes and checks a fetched manifest; throws when it is not what was asked for. */
export function verifiedManifest (bytes: Buffer, mediaType: string, expected: string | undefined, what: string): ManifestContent {
  const algorithm = expected === undefined ? 'sha256' : parseDigest(expected).algorithm
  const digest = `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`
  if (expected !== undefined && expected !== digest) throw new ClientError(`${what}: manifest ${expected} has digest ${digest}`)
  return { mediaType, digest, size: bytes.length, bytes }
}

/** Reads every manifest of `ref` through `client` and lists the blobs; unknown image → ClientError. */
export async function readImageContent (client: RegistryClient, ref: ImageReference): Promise<ImageContent> {
  const asked = ref.reference.includes(':') ? ref.reference : undefined
  const root = await client.manifest(ref.name, ref.reference)
  if (root === undefined) throw new ClientError(`unknown image ${ref.text}: ${client.baseUrl} has no manifest ${ref.reference} in ${ref.name}`, 404)
  const rootContent = verifiedManifest(root.bytes, root.mediaType, asked ?? (root.digest === '' ? undefined : root.digest), ref.text)
  const manifests: ManifestContent[] = [rootContent]
  const blobs = new Map<string, Descriptor>()
  const parsedRoot = parse(rootContent, ref.text)
  rootContent.mediaType = parsedRoot.mediaType
  for (const b of parsedRoot.blobs) blobs.set(b.digest, b)
  for (const child of parsedRoot.manifests) {
    const m = await client.manifest(ref.name, child.digest)
    if (m === undefined) throw new ClientError(`${ref.text}: platform manifest ${child.digest} is missing`, 404)
    const content = verifiedManifest(m.bytes, child.mediaType, child.digest, ref.text)
    manifests.push(content)
    // Nested indexes are rare and not followed: one level is what every platform pull reads.
    for (const b of parse(content, ref.text).blobs) blobs.set(b.digest, b)
  }
  return { ref, root: rootContent, manifests, blobs: [...blobs.values()] }
}

function parse (m: ManifestContent, what: string): ReturnType<typeof parseManifest> {
  try {
    return parseManifest(m.bytes, m.mediaType === '' ? undefined : m.mediaType)
  } catch (err) {
    throw new ClientError(`${what}: manifest ${m.digest}: ${(err as Error).message}`)
  }
}
