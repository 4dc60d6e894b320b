/**
 * Test images built offline and deterministically (no dockerd), as OCI image layouts, then copied
 * into a registry with `skopeo copy --all` (which keeps the digests).
 *
 * Each image has two gzip layers: /bin/busybox (so `docker run IMG` prints "hello from e2e") and
 * `data/random-<seed>.bin`, N pseudo-random bytes from AES-CTR keyed by the seed (incompressible,
 * so the blob is about N bytes). Same spec → same digests, always. Several platforms → an OCI index
 * whose per-platform manifests share the layers and differ in their config.
 */
import { createCipheriv, createHash } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { runOk } from './daemon.js'
import type { Distribution } from './distribution.js'
import { FIXTURE, certDirFor } from './pki.js'
import type { Scope } from './scope.js'
import { tar } from './tar.js'

export const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const

export interface ImageSpec {
  /** Size of the random layer's file (default 1 MiB). */
  randomBytes?: number
  /** Different seeds give different random layers, hence different images (default "tiny"). */
  seed?: string
  /** `os/arch[/variant]`; one (default linux/amd64) → an image manifest, several → an OCI index. */
  platforms?: string[]
  /** How many random layers (default 1), each of `randomBytes`: a herd test's several big layers. */
  randomLayers?: number
}

export interface Descriptor { mediaType: string, digest: string, size: number }

export interface PlatformManifest extends Descriptor {
  platform: string
  config: Descriptor
}

export interface BuiltImage {
  /** The OCI layout directory. */
  layoutDir: string
  tag: string
  /** What a tag resolves to: the index digest for multi-arch, else the manifest digest. */
  digest: string
  mediaType: string
  manifests: PlatformManifest[]
  /** Layer descriptors (shared by every platform): [busybox, random…]. */
  layers: Descriptor[]
}

interface Blob { descriptor: Descriptor, bytes: Buffer }

function blob (mediaType: string, bytes: Buffer): Blob {
  return { descriptor: { mediaType, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length }, bytes }
}

function jsonBlob (mediaType: string, value: unknown): Blob {
  return blob(mediaType, Buffer.from(JSON.stringify(value)))
}

let busyboxLayer: { gz: Blob, diffId: string } | undefined

function layerOf (tarBytes: Buffer, level = 6): { gz: Blob, diffId: string } {
  return { gz: blob(MEDIA.layer, gzipSync(tarBytes, { level })), diffId: `sha256:${createHash('sha256').update(tarBytes).digest('hex')}` }
}

function randomBytes (seed: string, n: number): Buffer {
  const key = createHash('sha256').update(`crossdock-e2e:${seed}`).digest()
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n))
}

/** Writes the OCI layout for `spec` under `layoutDir` with ref name `tag`. */
export function buildImage (layoutDir: string, tag: string, spec: ImageSpec = {}): BuiltImage {
  const seed = spec.seed ?? 'tiny'
  const platforms = spec.platforms ?? ['linux/amd64']
  // Memoised: the busybox layer is the same for every image, and gzip of 2 MB is the slow part.
  busyboxLayer ??= layerOf(tar([
    { path: 'bin', type: 'dir', mode: 0o755 },
    { path: 'bin/busybox', type: 'file', mode: 0o755, data: readFileSync('/bin/busybox') },
  ]))
  const random = Array.from({ length: spec.randomLayers ?? 1 }, (_, i) => {
    const name = i === 0 ? seed : `${seed}-${i}`
    return layerOf(tar([
      { path: 'data', type: 'dir', mode: 0o755 },
      { path: `data/random-${name}.bin`, type: 'file', mode: 0o644, data: randomBytes(name, spec.randomBytes ?? 1024 * 1024) },
    ]), 1)
  })
  const layers = [busyboxLayer, ...random]
  const blobs: Blob[] = layers.map(l => l.gz)
  const manifests: PlatformManifest[] = []
  const manifestBlobs: Blob[] = []
  for (const platform of platforms) {
    const [os, architecture, variant] = platform.split('/')
    if (os === undefined || architecture === undefined) throw new Error(`images: bad platform ${platform}`)
    const config = jsonBlob(MEDIA.config, {
      architecture,
      os,
      ...(variant !== undefined ? { variant } : {}),
      created: '2026-01-01T00:00:00Z',
      config: { Cmd: ['/bin/busybox', 'echo', 'hello from e2e'], Env: ['PATH=/bin'], Labels: { 'crossdock.e2e.seed': seed } },
      rootfs: { type: 'layers', diff_ids: layers.map(l => l.diffId) },
    })
    const manifest = jsonBlob(MEDIA.manifest, {
      schemaVersion: 2,
      mediaType: MEDIA.manifest,
      config: config.descriptor,
      layers: layers.map(l => l.gz.descriptor),
    })
    blobs.push(config, manifest)
    manifestBlobs.push(manifest)
    manifests.push({ ...manifest.descriptor, platform, config: config.descriptor })
  }
  let top: Blob
  if (platforms.length === 1) {
    top = manifestBlobs[0] as Blob
  } else {
    top = jsonBlob(MEDIA.index, {
      schemaVersion: 2,
      mediaType: MEDIA.index,
      manifests: manifests.map(m => {
        const [os, architecture, variant] = m.platform.split('/')
        return { mediaType: m.mediaType, digest: m.digest, size: m.size, platform: { architecture, os, ...(variant !== undefined ? { variant } : {}) } }
      }),
    })
    blobs.push(top)
  }

  mkdirSync(join(layoutDir, 'blobs/sha256'), { recursive: true })
  for (const b of blobs) writeFileSync(join(layoutDir, 'blobs/sha256', b.descriptor.digest.slice('sha256:'.length)), b.bytes)
  writeFileSync(join(layoutDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  writeFileSync(join(layoutDir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ ...top.descriptor, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }))
  return { layoutDir, tag, digest: top.descriptor.digest, mediaType: top.descriptor.mediaType, manifests, layers: layers.map(l => l.gz.descriptor) }
}

export interface PushOptions {
  /** CA for the destination's TLS (default: the fixture test CA). Ignored for plain HTTP. */
  caFile?: string
  /** Destination is plain HTTP (or TLS we do not verify). */
  insecure?: boolean
  creds?: { user: string, password: string }
  /** Extra env for skopeo (e.g. HTTPS_PROXY to push through crossdock). */
  env?: Record<string, string>
}

/** `skopeo copy --all` of the layout to `docker://<destRef>`; digests are preserved. */
export async function pushImage (scope: Scope, image: BuiltImage, destRef: string, opts: PushOptions = {}): Promise<void> {
  const args = ['copy', '--all', '--quiet']
  if (opts.insecure === true) args.push('--dest-tls-verify=false')
  else args.push('--dest-cert-dir', certDirFor(scope, opts.caFile ?? FIXTURE.testCa))
  if (opts.creds !== undefined) args.push('--dest-creds', `${opts.creds.user}:${opts.creds.password}`)
  args.push(`oci:${image.layoutDir}:${image.tag}`, `docker://${destRef}`)
  await runOk('skopeo', args, { env: opts.env, timeoutMs: 60_000 })
}

/**
 * Builds `spec` and pushes it to `registry` as `repository:tag` straight to its IP (TLS verified
 * with the fixture CA). Returns what was built so tests can assert digests.
 */
export async function seedImage (scope: Scope, registry: Distribution, repository: string, tag: string, spec: ImageSpec = {}, creds?: { user: string, password: string }): Promise<BuiltImage> {
  const image = buildImage(scope.path('images', `${repository.replace(/\//g, '_')}_${tag}`), tag, spec)
  await pushImage(scope, image, `${registry.address}/${repository}:${tag}`, { insecure: !registry.tls, creds })
  return image
}
