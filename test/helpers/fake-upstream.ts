/**
 * A counting fake upstream registry for integration tests, over TLS with the TEST-ONLY fixture
 * certificate (valid for registry-1.docker.io, auth.docker.io, ghcr.io, cdn.test, *.test, …).
 * Point any of those names at it with UPSTREAM_CONNECT_TO `host:443:127.0.0.1:<port>`; the Host
 * header tells which name a request was meant for.
 *
 * It serves blobs and manifests it was given, counts every request (method, host, path), and lets a
 * test inject faults: a `fault` hook that may answer a request itself (429, 5xx, slow, truncated,
 * wrong bytes…), blob redirects to a CDN host, and a per-response throttle.
 */
import https from 'node:https'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { parseRange } from '../../src/oci/range.js'

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url))
export const TEST_CA_FILE = `${FIXTURES}test-ca.crt`
export const TEST_CA_PEM = readFileSync(TEST_CA_FILE, 'utf8')

export interface Hit {
  method: string
  host: string
  path: string
  headers: IncomingMessage['headers']
}

export interface StoredManifest {
  body: Buffer
  mediaType: string
  digest: string
}

/** Return true when the fault handled (answered) the request. */
export type Fault = (req: IncomingMessage, res: ServerResponse, hit: Hit) => boolean | Promise<boolean>

export function sha256 (data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

export class FakeUpstream {
  readonly hits: Hit[] = []
  readonly blobs = new Map<string, Buffer>()
  /** repository → reference (tag or digest) → manifest */
  readonly manifests = new Map<string, Map<string, StoredManifest>>()
  fault?: Fault
  /** When set, blob GETs answer 307 to `${cdnOrigin}/cdn/<digest>?sig=…` instead of the bytes. */
  cdnOrigin?: string
  /** Answer `Range` on blob GETs with 206 (as distribution and CDNs do); off: always the whole blob (200). */
  ranges = false
  /** Bytes per second per response body (0 = unthrottled). */
  throttle = 0
  /** TLS connections accepted so far (connection reuse shows here). */
  connections = 0
  private server?: https.Server
  /** The loopback address it listens on (start's argument). */
  host = '127.0.0.1'

  /** Listens on port 0 of `host` (a test file's own loopback address, test/e2e/README.md). */
  async start (host = '127.0.0.1'): Promise<number> {
    this.host = host
    this.server = https.createServer({
      cert: readFileSync(`${FIXTURES}upstream.crt`),
      key: readFileSync(`${FIXTURES}upstream.key`),
      requestTimeout: 0,
    }, (req, res) => { this.handle(req, res).catch(() => res.destroy()) })
    this.server.on('secureConnection', () => { this.connections++ })
    await new Promise<void>(resolve => this.server!.listen(0, host, resolve))
    return this.port
  }

  get port (): number {
    return (this.server!.address() as AddressInfo).port
  }

  /** UPSTREAM_CONNECT_TO entries sending `hosts` (port 443) to this server. */
  connectTo (hosts: string[]): string {
    return hosts.map(h => `${h}:443:${this.host}:${this.port}`).join(',')
  }

  async stop (): Promise<void> {
    if (this.server === undefined) return
    this.server.closeAllConnections()
    await new Promise<void>(resolve => this.server!.close(() => resolve()))
  }

  addBlob (data: Buffer | string): string {
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data)
    const digest = sha256(buf)
    this.blobs.set(digest, buf)
    return digest
  }

  addManifest (repository: string, tag: string | undefined, manifest: object | string, mediaType: string): StoredManifest {
    const body = Buffer.from(typeof manifest === 'string' ? manifest : JSON.stringify(manifest))
    const m = { body, mediaType, digest: sha256(body) }
    const repo = this.manifests.get(repository) ?? new Map<string, StoredManifest>()
    repo.set(m.digest, m)
    if (tag !== undefined) repo.set(tag, m)
    this.manifests.set(repository, repo)
    return m
  }

  /** A one-layer image (config + layer) under repository:tag; returns its digests. */
  addImage (repository: string, tag: string, layer: Buffer | string): { manifest: StoredManifest, config: string, layer: string } {
    const config = this.addBlob(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))
    const layerDigest = this.addBlob(layer)
    const manifest = this.addManifest(repository, tag, {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: this.blobs.get(config)!.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: this.blobs.get(layerDigest)!.length }],
    }, 'application/vnd.oci.image.manifest.v1+json')
    return { manifest, config, layer: layerDigest }
  }

  count (method: string, pathPart: string | RegExp): number {
    return this.hits.filter(h => h.method === method && (typeof pathPart === 'string' ? h.path.includes(pathPart) : pathPart.test(h.path))).length
  }

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://x')
    const hit: Hit = { method: req.method ?? 'GET', host: String(req.headers.host ?? ''), path: `${url.pathname}${url.search}`, headers: req.headers }
    this.hits.push(hit)
    if (this.fault !== undefined && await this.fault(req, res, hit)) return
    const path = url.pathname
    if (path === '/v2/' || path === '/v2') return this.send(res, 200, 'application/json', Buffer.from('{}'), req.method)
    let m = /^\/cdn\/(sha256:[0-9a-f]{64})$/.exec(path)
    if (m !== null) return this.sendBlob(req, res, m[1])
    m = /^\/v2\/(.+)\/blobs\/([^/]+)$/.exec(path)
    if (m !== null && (req.method === 'GET' || req.method === 'HEAD')) {
      if (!this.blobs.has(m[2])) return this.ociError(res, 404, 'BLOB_UNKNOWN', req.method)
      if (this.cdnOrigin !== undefined && req.method === 'GET') {
        res.writeHead(307, { location: `${this.cdnOrigin}/cdn/${m[2]}?sig=abc`, 'content-length': 0 })
        res.end()
        return
      }
      return this.sendBlob(req, res, m[2])
    }
    m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(path)
    if (m !== null && (req.method === 'GET' || req.method === 'HEAD')) {
      const man = this.manifests.get(m[1])?.get(decodeURIComponent(m[2]))
      if (man === undefined) return this.ociError(res, 404, 'MANIFEST_UNKNOWN', req.method)
      res.setHeader('docker-content-digest', man.digest)
      return this.send(res, 200, man.mediaType, man.body, req.method)
    }
    if (req.method === 'POST' || req.method === 'PUT' || req.method === 'PATCH') {
      // Accept and count pushes: echo back how many bytes arrived so tests can check streaming.
      let n = 0
      for await (const chunk of req) n += (chunk as Buffer).length
      res.writeHead(202, { 'x-received-bytes': String(n), 'content-length': 0, location: path })
      res.end()
      return
    }
    this.ociError(res, 404, 'NAME_UNKNOWN', req.method)
  }

  private sendBlob (req: IncomingMessage, res: ServerResponse, digest: string): void {
    const data = this.blobs.get(digest)
    if (data === undefined) return this.ociError(res, 404, 'BLOB_UNKNOWN', req.method)
    res.setHeader('docker-content-digest', digest)
    const range = this.ranges ? parseRange(req.headers.range, data.length) : undefined
    if (range === 'unsatisfiable') {
      res.setHeader('content-range', `bytes */${data.length}`)
      return this.send(res, 416, 'application/octet-stream', Buffer.alloc(0), req.method)
    }
    if (range !== undefined) {
      res.setHeader('content-range', `bytes ${range.start}-${range.end}/${data.length}`)
      return this.send(res, 206, 'application/octet-stream', data.subarray(range.start, range.end + 1), req.method)
    }
    this.send(res, 200, 'application/octet-stream', data, req.method)
  }

  send (res: ServerResponse, status: number, type: string, body: Buffer, method = 'GET'): void {
    res.writeHead(status, { 'content-type': type, 'content-length': body.length })
    if (method === 'HEAD') { res.end(); return }
    if (this.throttle <= 0) { res.end(body); return }
    // Throttled: 64 KiB slices paced to `throttle` bytes/s, respecting backpressure.
    const slice = 64 * 1024
    let off = 0
    const started = Date.now()
    const next = (): void => {
      if (res.destroyed) return
      if (off >= body.length) { res.end(); return }
      const due = started + (off / this.throttle) * 1000
      const wait = Math.max(0, due - Date.now())
      setTimeout(() => {
        const chunk = body.subarray(off, off + slice)
        off += chunk.length
        if (res.write(chunk)) next()
        else res.once('drain', next)
      }, wait)
    }
    next()
  }

  ociError (res: ServerResponse, status: number, code: string, method = 'GET'): void {
    const body = Buffer.from(JSON.stringify({ errors: [{ code, message: code.toLowerCase(), detail: null }] }))
    this.send(res, status, 'application/json', body, method)
  }
}
