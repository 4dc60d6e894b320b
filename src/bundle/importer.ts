/**
 * `crossdock import`: loads an OCI image layout archive (ours, or skopeo's `oci-archive:`) into a
 * running crossdock through its registry door, as a client:
 *
 *   --into hosted: the registry API (HEAD blob → POST + streamed PUT; manifests PUT, platform
 *                  manifests by digest first, the tag last), validated by the hosted registry;
 *   --into cache:  /import/cache/… (cache-import.ts), which fills the pull-through cache the way a
 *                  pull would and records the tag, so `docker pull` works with no upstream at all.
 *
 * Each index.json entry names its image by `org.opencontainers.image.ref.name` (a full reference,
 * `docker.io/library/alpine:3.20`; a bare tag needs --name). Digests are verified twice: manifests
 * here, every blob by the receiving side, which refuses a mismatch. Resumable: what the target holds
 * already is skipped, so an interrupted import is simply run again. Blobs are streamed from the
 * archive in place (tar-index.ts); nothing is extracted.
 */
import { Readable } from 'node:stream'
import type { RegistryClient } from '../client/registry-client.js'
import { ClientError } from '../client/registry-client.js'
import { parseImageReference, verifiedManifest, type ImageReference, type ManifestContent } from '../client/image-content.js'
import { parseManifest } from '../registry/manifest-validation.js'
import type { Descriptor } from '../registry/storage/stores.js'
import { TarIndex } from './tar-index.js'
import { REF_NAME, blobPath, type BundleProgress } from './exporter.js'

export type ImportTarget = 'hosted' | 'cache'

interface BundleImage {
  ref: ImageReference
  manifests: ManifestContent[]
  blobs: Descriptor[]
}

export async function importBundle (opts: { client: RegistryClient, path: string, into: ImportTarget, name?: string, progress: BundleProgress }): Promise<{ images: string[], sent: number, skipped: number }> {
  const { client, into, progress } = opts
  const tar = await TarIndex.open(opts.path).catch(err => {
    throw (err as NodeJS.ErrnoException).code !== undefined ? err : new ClientError((err as Error).message)
  })
  const images = await readBundleImages(tar, opts.path, opts.name)
  const total = images.flatMap(i => i.blobs).reduce((n, b) => n + b.size, 0)
  let done = 0
  let sent = 0
  let skipped = 0
  const prefix = into === 'cache' ? '/import/cache/' : '/v2/'
  for (const image of images) {
    const { name } = image.ref
    for (const b of image.blobs) {
      const entry = tar.get(blobPath(b.digest))
      if (entry === undefined) throw new ClientError(`${opts.path}: ${image.ref.text} needs blob ${b.digest}, which the archive lacks`)
      if (entry.size !== b.size) throw new ClientError(`${opts.path}: blob ${b.digest} is ${entry.size} bytes, its descriptor says ${b.size}`)
      if (await exists(client, prefix, name, b.digest)) { skipped++; done += b.size; progress.bytes(done, total, b.digest); continue }
      // Counted as it is pulled (a 'data' listener would start the flow before the upload reads).
      const source = tar.stream(entry)
      const body = Readable.from((async function * () {
        for await (const chunk of source as AsyncIterable<Buffer>) { done += chunk.length; progress.bytes(done, total, b.digest); yield chunk }
      })())
      if (into === 'hosted') await client.pushBlob(name, b.digest, b.size, body)
      else await put(client, `${prefix}${name}/blobs/${b.digest}`, body, { 'content-type': 'application/octet-stream', 'content-length': String(b.size) })
      sent++
      progress.line(`${b.digest.slice(0, 19)}  ${b.size} bytes  sent`)
    }
    // Platform manifests before the index that lists them, the tag last: a reader never sees a tag
    // whose content is not all there.
    const [root, ...children] = image.manifests
    for (const m of [...children, root]) {
      const reference = m === root && !image.ref.reference.includes(':') ? image.ref.reference : m.digest
      if (into === 'hosted') await client.putManifest(name, reference, m.bytes, m.mediaType)
      else await put(client, `${prefix}${name}/manifests/${reference}`, m.bytes, { 'content-type': m.mediaType })
    }
    progress.line(`${image.ref.text}  ${root.digest}  imported into ${into}`)
  }
  return { images: images.map(i => i.ref.text), sent, skipped }
}

/** The images an archive's index.json lists, their manifests read and verified from the archive. */
export async function readBundleImages (tar: TarIndex, path: string, nameOverride?: string): Promise<BundleImage[]> {
  const layout = tar.get('oci-layout')
  const indexEntry = tar.get('index.json')
  if (layout === undefined || indexEntry === undefined) throw new ClientError(`${path}: not an OCI image layout archive (no ${layout === undefined ? 'oci-layout' : 'index.json'})`)
  let index: any
  try { index = JSON.parse((await tar.read(indexEntry)).toString('utf8')) } catch (err) { throw new ClientError(`${path}: index.json is not JSON: ${(err as Error).message}`) }
  if (!Array.isArray(index?.manifests) || index.manifests.length === 0) throw new ClientError(`${path}: index.json lists no images`)
  const readManifest = async (d: Descriptor): Promise<ManifestContent> => {
    const entry = tar.get(blobPath(d.digest))
    if (entry === undefined) throw new ClientError(`${path}: manifest ${d.digest} is not in the archive`)
    return verifiedManifest(await tar.read(entry), d.mediaType, d.digest, path)
  }
  const out: BundleImage[] = []
  for (const d of index.manifests as Array<Descriptor & { annotations?: Record<string, string> }>) {
    const refName = d.annotations?.[REF_NAME]
    // image-layout: ref.name is often a tag alone (skopeo `oci-archive:x.tar:1`, containerd); a full
    // reference has a `/`, `:` or `@`.
    const tagOnly = refName !== undefined && !/[/:@]/.test(refName)
    let text = refName
    if (nameOverride !== undefined) text = tagOnly ? `${nameOverride}:${refName ?? ''}` : nameOverride
    else if (refName === undefined) throw new ClientError(`${path}: index.json entry ${d.digest} has no ${REF_NAME} annotation; pass --name <repository[:tag]>`)
    else if (tagOnly) throw new ClientError(`${path}: index.json entry ${d.digest} is named ${JSON.stringify(refName)}: the archive names only a tag: pass --name <repository>`)
    let ref: ImageReference
    try { ref = parseImageReference(text ?? '') } catch (err) { throw new ClientError(`${path}: ${(err as Error).message}`) }
    const root = await readManifest(d)
    const manifests = [root]
    const blobs = new Map<string, Descriptor>()
    const parsed = parseManifest(root.bytes, root.mediaType)
    root.mediaType = parsed.mediaType
    for (const b of parsed.blobs) blobs.set(b.digest, b)
    for (const child of parsed.manifests) {
      // skopeo without --all writes one platform's manifest; an index whose platforms are not all
      // in the archive cannot be imported faithfully.
      const m = await readManifest(child)
      manifests.push(m)
      for (const b of parseManifest(m.bytes, m.mediaType).blobs) blobs.set(b.digest, b)
    }
    out.push({ ref, manifests, blobs: [...blobs.values()] })
  }
  return out
}

async function exists (client: RegistryClient, prefix: string, name: string, digest: string): Promise<boolean> {
  if (prefix === '/v2/') return (await client.hasBlob(name, digest)).exists
  const r = await client.send('GET', `${prefix}${name}/blobs/${digest}`)
  if (r.statusCode === 200 || r.statusCode === 404) { await r.body.dump(); return r.statusCode === 200 }
  throw await client.failure(r, `import into the cache as ${name}`)
}

async function put (client: RegistryClient, path: string, body: Buffer | NodeJS.ReadableStream, headers: Record<string, string>): Promise<void> {
  const r = await client.send('PUT', path, headers, body as any)
  if (r.statusCode !== 201) throw await client.failure(r, `PUT ${path}`)
  await r.body.dump()
}

