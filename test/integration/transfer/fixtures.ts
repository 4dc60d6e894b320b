/**
 * Images for warm-up and bundle tests: a two-platform OCI index on the fake upstream, and a client of
 * an app's registry door.
 */
import { randomBytes } from 'node:crypto'
import type { FakeUpstream } from '../../helpers/fake-upstream.js'
import { RegistryClient } from '../../../src/client/registry-client.js'
import type { StartedApp } from '../../helpers/start-app.js'

export const INDEX = 'application/vnd.oci.image.index.v1+json'
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
/** What dockerd 20.10 sends when it pulls (no OCI index in its set: the fallback tag record must match by media type). */
export const DOCKERD_ACCEPT = 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json'

export interface MultiArch {
  index: string
  platforms: Array<{ manifest: string, config: string, layer: string }>
  blobs: string[]
}

/** `repository:tag` as an OCI index of linux/amd64 and linux/arm64, one layer each. */
export function addMultiArch (up: FakeUpstream, repository: string, tag: string, layerSize = 100_000): MultiArch {
  const platforms = ['amd64', 'arm64'].map(arch => {
    const config = up.addBlob(JSON.stringify({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))
    const layer = up.addBlob(randomBytes(layerSize))
    const m = up.addManifest(repository, undefined, {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: up.blobs.get(config)!.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer, size: layerSize }],
    }, OCI_MANIFEST)
    return { arch, manifest: m.digest, config, layer, size: m.body.length }
  })
  const index = up.addManifest(repository, tag, {
    schemaVersion: 2,
    mediaType: INDEX,
    manifests: platforms.map(p => ({ mediaType: OCI_MANIFEST, digest: p.manifest, size: p.size, platform: { architecture: p.arch, os: 'linux' } })),
  }, INDEX)
  return { index: index.digest, platforms, blobs: platforms.flatMap(p => [p.config, p.layer]) }
}

export function doorClient (app: StartedApp, authorization?: string): RegistryClient {
  return new RegistryClient({ baseUrl: `http://127.0.0.1:${app.registryPort}`, authorization })
}

/** POST /warm and the NDJSON events it streams. */
export async function warmVia (client: RegistryClient, images: string[]): Promise<{ status: number, events: any[], body: string }> {
  const r = await client.send('POST', '/warm', { 'content-type': 'application/json' }, JSON.stringify({ images }))
  const body = await r.body.text()
  const events = r.statusCode === 200 ? body.split('\n').filter(l => l !== '').map(l => JSON.parse(l)) : []
  return { status: r.statusCode, events, body }
}
