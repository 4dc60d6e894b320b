/**
 * `crossdock export`: an OCI image layout archive (image-spec image-layout.md) of some images, read
 * through a crossdock registry door as a client — so it works the same for the pull-through cache
 * (`docker.io/library/alpine:3.20`) and hosted repositories (`team/app:1`), whatever the storage.
 *
 *   bundle.tar:  oci-layout                        {"imageLayoutVersion":"1.0.0"}
 *                blobs/<alg>/<hex>                 every manifest, config and layer, once
 *                index.json                        one entry per image, annotated
 *                                                  org.opencontainers.image.ref.name = <reference>
 *
 * `skopeo copy oci-archive:bundle.tar:<reference> …` reads one image back by that annotation.
 * Layers are streamed from the door into the archive (hashed on the way and checked against their
 * digest); the archive is written as `<out>.partial` and renamed only when complete.
 */
import { createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { rename, rm } from 'node:fs/promises'
import type { RegistryClient } from '../client/registry-client.js'
import { ClientError } from '../client/registry-client.js'
import { readImageContent, type ImageContent, type ImageReference } from '../client/image-content.js'
import { TarWriter } from './tar-writer.js'

export const REF_NAME = 'org.opencontainers.image.ref.name'
export const INDEX_MEDIA_TYPE = 'application/vnd.oci.image.index.v1+json'

export interface BundleProgress {
  /** Called as bytes move (throttle the display yourself). */
  bytes: (done: number, total: number, what: string) => void
  /** One line per finished item. */
  line: (text: string) => void
}

export async function exportBundle (opts: { client: RegistryClient, images: ImageReference[], out: string, progress: BundleProgress }): Promise<{ images: number, blobs: number, bytes: number }> {
  const { client, images, out, progress } = opts
  const contents: ImageContent[] = []
  for (const ref of images) contents.push(await readImageContent(client, ref))
  const manifests = new Map(contents.flatMap(c => c.manifests).map(m => [m.digest, m]))
  const blobs = new Map(contents.flatMap(c => c.blobs.map(b => [b.digest, { ...b, name: c.ref.name }] as const)))
  const total = [...blobs.values()].reduce((n, b) => n + b.size, 0)

  const partial = `${out}.partial`
  const file = createWriteStream(partial, { highWaterMark: 1 << 20 })
  const failed = new Promise<never>((_resolve, reject) => { file.once('error', reject) })
  const tar = new TarWriter(file)
  const work = (async () => {
    await tar.file('oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}'))
    await tar.directory('blobs')
    for (const alg of new Set([...manifests.keys(), ...blobs.keys()].map(d => d.split(':')[0]))) await tar.directory(`blobs/${alg}`)
    for (const m of manifests.values()) await tar.file(blobPath(m.digest), m.bytes)
    let done = 0
    for (const b of blobs.values()) {
      const { body } = await client.blob(b.name, b.digest)
      const [alg] = b.digest.split(':')
      const hash = createHash(alg)
      await tar.stream(blobPath(b.digest), b.size, body, chunk => { hash.update(chunk); done += chunk.length; progress.bytes(done, total, b.digest) })
      const got = `${alg}:${hash.digest('hex')}`
      if (got !== b.digest) throw new ClientError(`blob ${b.digest} read from ${client.baseUrl} has digest ${got}; nothing written`)
      progress.line(`${b.digest.slice(0, 19)}  ${b.size} bytes`)
    }
    const index = {
      schemaVersion: 2,
      mediaType: INDEX_MEDIA_TYPE,
      manifests: contents.map(c => ({ mediaType: c.root.mediaType, digest: c.root.digest, size: c.root.size, annotations: { [REF_NAME]: c.ref.text } })),
    }
    await tar.file('index.json', Buffer.from(JSON.stringify(index)))
    await tar.finish()
  })()
  try {
    await Promise.race([work, failed])
  } catch (err) {
    file.destroy()
    await rm(partial, { force: true })
    throw err
  }
  await rename(partial, out)
  return { images: contents.length, blobs: blobs.size + manifests.size, bytes: tar.position }
}

export function blobPath (digest: string): string {
  const [alg, hex] = digest.split(':')
  return `blobs/${alg}/${hex}`
}
