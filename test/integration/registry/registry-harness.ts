/**
 * Starts the hosted registry the way the registry port serves it (createRegistryServer on
 * 127.0.0.1, port 0, a temp storage dir) and talks to it with undici: no mocks.
 */
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { Agent, request } from 'undici'
import { loadConfig, type Config } from '../../../src/config/index.js'
import { createSilentLogger } from '../../../src/log.js'
import { createHostedRegistry, type HostedRegistry } from '../../../src/registry/hosted-registry.js'
import { createRegistryServer, type RegistryServer } from '../../../src/registry/registry-server.js'

export interface Reply {
  status: number
  headers: Record<string, string>
  body: Buffer
  json: () => any
}

export interface Harness {
  dir: string
  config: Config
  base: string
  req: (method: string, path: string, opts?: { headers?: Record<string, string>, body?: Buffer | string | NodeJS.ReadableStream | AsyncIterable<Buffer> }) => Promise<Reply>
  restart: () => Promise<void>
  close: () => Promise<void>
}

export async function startRegistry (opts: { dir?: string, env?: Record<string, string> } = {}): Promise<Harness> {
  const dir = opts.dir ?? await mkdtemp(join(tmpdir(), 'crossdock-registry-'))
  const config = loadConfig({ REGISTRY_STORAGE_DIR: dir, REGISTRY_PORT: '0', LISTEN_HOST: '127.0.0.1', ...opts.env })
  const log = createSilentLogger()
  const dispatcher = new Agent({ keepAliveTimeout: 1000 })
  let hosted: HostedRegistry
  let server: RegistryServer
  const h: Harness = {
    dir,
    config,
    base: '',
    req: async (method, path, o = {}) => {
      const r = await request(`${h.base}${path}`, { method: method as any, headers: o.headers, body: o.body as any, dispatcher })
      const body = Buffer.from(await r.body.arrayBuffer())
      const headers: Record<string, string> = {}
      for (const [k, v] of Object.entries(r.headers)) headers[k] = Array.isArray(v) ? v.join(', ') : String(v)
      return { status: r.statusCode, headers, body, json: () => JSON.parse(body.toString('utf8')) }
    },
    restart: async () => {
      await server.close()
      await hosted.close()
      await up()
    },
    close: async () => {
      await server.close()
      await hosted.close()
      await dispatcher.close()
      if (opts.dir === undefined) await rm(dir, { recursive: true, force: true })
    },
  }
  const up = async (): Promise<void> => {
    hosted = await createHostedRegistry({ config, log })
    server = createRegistryServer({ config, log, hosted })
    const addr = await server.listen(0, '127.0.0.1')
    h.base = `http://127.0.0.1:${addr.port}`
  }
  await up()
  return h
}

export function digestOf (data: Buffer | string, algorithm: 'sha256' | 'sha512' = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`
}

/** Every file under the storage dir (relative paths, with sizes), for "wrote nothing" assertions. */
export async function filesUnder (dir: string): Promise<string[]> {
  const out: string[] = []
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (e.isDirectory()) await walk(p)
      else out.push(`${relative(dir, p)} ${(await stat(p)).size}`)
    }
  }
  await walk(dir)
  return out.sort()
}

export async function sizeOf (path: string): Promise<number> {
  return (await stat(path)).size
}

/** Pushes a blob with POST ?digest= (end-4b); returns its digest. */
export async function pushBlob (h: Harness, name: string, data: Buffer | string): Promise<string> {
  const digest = digestOf(data)
  const r = await h.req('POST', `/v2/${name}/blobs/uploads/?digest=${digest}`, { body: data, headers: { 'content-type': 'application/octet-stream' } })
  if (r.status !== 201) throw new Error(`pushBlob: ${r.status} ${r.body.toString()}`)
  return digest
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'

/** Pushes a config and one layer, then an OCI manifest under `reference`. */
export async function pushImage (h: Harness, name: string, reference: string, opts: { layer?: string, config?: string, extra?: Record<string, unknown>, mediaType?: string } = {}): Promise<{ digest: string, body: Buffer, config: string, layer: string }> {
  const configData = opts.config ?? JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } })
  const layerData = opts.layer ?? `layer of ${name}:${reference}`
  const config = await pushBlob(h, name, configData)
  const layer = await pushBlob(h, name, layerData)
  const mediaType = opts.mediaType ?? OCI_MANIFEST
  const isDocker = mediaType === DOCKER_MANIFEST
  const manifest = {
    schemaVersion: 2,
    mediaType,
    config: { mediaType: isDocker ? 'application/vnd.docker.container.image.v1+json' : 'application/vnd.oci.image.config.v1+json', digest: config, size: Buffer.byteLength(configData) },
    layers: [{ mediaType: isDocker ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer, size: Buffer.byteLength(layerData) }],
    ...opts.extra,
  }
  const body = Buffer.from(JSON.stringify(manifest))
  const r = await h.req('PUT', `/v2/${name}/manifests/${reference}`, { body, headers: { 'content-type': mediaType } })
  if (r.status !== 201) throw new Error(`pushImage: ${r.status} ${r.body.toString()}`)
  return { digest: digestOf(body), body, config, layer }
}

/** A request whose path is sent byte for byte (undici, like browsers, would resolve `..`). */
export async function rawRequest (h: Harness, method: string, path: string): Promise<{ status: number, body: string }> {
  const { request: httpRequest } = await import('node:http')
  const url = new URL(h.base)
  return await new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, method, path, agent: false }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', c => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}
