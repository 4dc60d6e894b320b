/**
 * What the cluster benchmark's clients do, over plain HTTP to a load balancer (`host:port`):
 *
 *   pushBlob   POST uploads → one streamed PATCH → PUT ?digest=   (docker's way; with round robin
 *              the three requests land on three replicas)
 *   pullBlob   GET the blob, counting bytes without keeping them
 *   pullImage  GET a manifest by tag, then its config and layers `parallel` at a time (a herd client)
 *
 * Bodies are generated (bench/peers/hosted.ts GeneratedBlob) and never held whole.
 */
import http from 'node:http'
import { createHash } from 'node:crypto'
import { GeneratedBlob } from '../peers/hosted.js'

export interface Target { host: string, port: number }

interface Reply { status: number, headers: http.IncomingHttpHeaders, bytes: number, body: Buffer }

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })

export async function call (to: Target, method: string, path: string, o: { write?: (req: http.ClientRequest) => Promise<void>, headers?: Record<string, string>, keep?: boolean } = {}): Promise<Reply> {
  return await new Promise<Reply>((resolve, reject) => {
    const req = http.request({ host: to.host, port: to.port, method, path, headers: o.headers, agent }, res => {
      let bytes = 0
      const kept: Buffer[] = []
      res.on('data', (c: Buffer) => { bytes += c.length; if (o.keep === true) kept.push(c) })
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes, body: Buffer.concat(kept) }))
      res.once('error', reject)
    })
    req.once('error', reject)
    if (o.write === undefined) req.end()
    else o.write(req).catch(reject)
  })
}

function location (r: Reply, what: string): string {
  const loc = r.headers.location
  if (r.status !== 202 || typeof loc !== 'string') throw new Error(`${what}: ${r.status} ${r.body.toString().slice(0, 200)}`)
  const u = new URL(loc, 'http://lb')
  return `${u.pathname}${u.search}`
}

/** A different blob of `blob.size` bytes per key; its digest. */
export function tailFor (key: string): Buffer {
  return createHash('sha256').update(key).digest().subarray(0, 8)
}

/** Pushes the blob whose last 8 bytes are `tail`; seconds. Throws unless the PUT answers 201. */
export async function pushBlob (to: Target, repo: string, blob: GeneratedBlob, tail: Buffer): Promise<number> {
  const t0 = performance.now()
  const post = await call(to, 'POST', `/v2/${repo}/blobs/uploads/`, { headers: { 'content-length': '0' }, keep: true })
  const patch = await call(to, 'PATCH', location(post, 'POST uploads'), {
    write: async req => { await blob.write(req, tail) },
    headers: { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' },
    keep: true,
  })
  const at = location(patch, 'PATCH')
  const put = await call(to, 'PUT', `${at}${at.includes('?') ? '&' : '?'}digest=${encodeURIComponent(blob.digest(tail))}`, { headers: { 'content-length': '0' }, keep: true })
  if (put.status !== 201) throw new Error(`PUT ?digest= → ${put.status} ${put.body.toString().slice(0, 300)}`)
  return (performance.now() - t0) / 1000
}

/** GETs a blob; seconds. Throws unless it is 200 with `size` bytes. */
export async function pullBlob (to: Target, repo: string, digest: string, size: number): Promise<number> {
  const t0 = performance.now()
  const r = await call(to, 'GET', `/v2/${repo}/blobs/${digest}`)
  if (r.status !== 200 || r.bytes !== size) throw new Error(`GET ${digest.slice(0, 19)} → ${r.status}, ${r.bytes} of ${size} bytes`)
  return (performance.now() - t0) / 1000
}

/** Runs `fn` over `items`, `parallel` at a time. */
export async function pool<T> (items: T[], parallel: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(parallel, items.length) }, async () => {
    while (next < items.length) await fn(items[next++] as T)
  }))
}

const MANIFEST_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'

/** One herd client: the manifest by tag, then config and layers 3 at a time (docker's default); bytes. */
export async function pullImage (to: Target, repo: string, tag: string): Promise<number> {
  const m = await call(to, 'GET', `/v2/${repo}/manifests/${tag}`, { headers: { accept: MANIFEST_ACCEPT }, keep: true })
  if (m.status !== 200) throw new Error(`GET manifest ${repo}:${tag} → ${m.status} ${m.body.toString().slice(0, 200)}`)
  const manifest = JSON.parse(m.body.toString()) as { config: { digest: string, size: number }, layers: Array<{ digest: string, size: number }> }
  let bytes = m.bytes
  await pool([manifest.config, ...manifest.layers], 3, async d => {
    await pullBlob(to, repo, d.digest, d.size)
    bytes += d.size
  })
  return bytes
}
