/**
 * The upstream every contender pulls from: a fake Docker Hub (`registry-1.docker.io`, TLS with the
 * TEST-ONLY fixture certificate) in its own process, so its pacing timers and TLS work are not
 * disturbed by the benchmark's clients and its CPU can be read apart.
 *
 *   driver ──IPC (variant, image, stats)──► child: https on 127.0.0.1:443
 *                                              /v2/                      200 {} (no token dance)
 *                                              /v2/<name>/manifests/<r>  GET|HEAD, by tag or digest
 *                                              /v2/<name>/blobs/<d>      GET|HEAD, paced per response
 *
 * Big blobs are "variants" of one SIZE-byte buffer that differ in their last 8 bytes, so every cold
 * scenario gets a fresh digest without holding several copies (their sha256 continues one shared
 * hash state). Each response body is paced to RATE bytes/s (repository names ending in
 * `-unthrottled` are served at full speed: the physical limit for warm reads). Every request is
 * counted per method and path, with the body bytes actually written.
 * Same ideas as test/helpers/fake-upstream.ts, with a fixed port (distribution's `remoteurl` has
 * none) and byte counts.
 */
import https from 'node:https'
import { spawn, type ChildProcess } from 'node:child_process'
import { createCipheriv, createHash, type Hash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { tar } from '../../test/helpers/e2e/tar.js'

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/', import.meta.url))
const SLICE = 256 * 1024

export const HUB = 'registry-1.docker.io'
export const MEDIA = {
  manifest: 'application/vnd.docker.distribution.manifest.v2+json',
  config: 'application/vnd.docker.container.image.v1+json',
  layer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const

/** Per "METHOD /path" (no query): requests and body bytes written; "TLS connections": handshakes. */
export type UpstreamStats = Record<string, { count: number, bytes: number }>

type Command =
  | { cmd: 'variant', key: string }
  | { cmd: 'image', repository: string, tag: string, layers: number, layerBytes: number, seed: string }
  | { cmd: 'stats' }

export interface Upstream {
  pid: number
  /** Digest of the big blob (the bench image's layer) that `library/bench:latest` references. */
  digest: string
  size: number
  /** A fresh big-blob digest for `key` (same key, same digest). */
  variant: (key: string) => Promise<string>
  /** Adds `repository:tag`: `layers` gzip tar layers of `layerBytes` incompressible bytes each. */
  image: (repository: string, tag: string, layers: number, layerBytes: number, seed: string) => Promise<string>
  stats: () => Promise<UpstreamStats>
  stop: () => Promise<void>
}

export async function startUpstream (opts: { size: number, rateBytesPerSec: number, port?: number }): Promise<Upstream> {
  const child: ChildProcess = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--serve'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, UPSTREAM_SIZE: String(opts.size), UPSTREAM_RATE: String(opts.rateBytesPerSec), UPSTREAM_PORT: String(opts.port ?? 443) },
  })
  let seq = 0
  const waiting = new Map<number, (v: unknown) => void>()
  const ready = new Promise<string>((resolve, reject) => {
    child.once('exit', code => reject(new Error(`upstream exited ${code}`)))
    child.on('message', (m: { id?: number, ready?: string, result?: unknown }) => {
      if (m.ready !== undefined) resolve(m.ready)
      else if (m.id !== undefined) { waiting.get(m.id)?.(m.result); waiting.delete(m.id) }
    })
  })
  const call = async <T>(c: Command): Promise<T> => await new Promise<T>(resolve => {
    const id = ++seq
    waiting.set(id, v => resolve(v as T))
    child.send({ id, ...c })
  })
  const digest = await ready
  return {
    pid: child.pid!,
    digest,
    size: opts.size,
    variant: async key => await call<string>({ cmd: 'variant', key }),
    image: async (repository, tag, layers, layerBytes, seed) => await call<string>({ cmd: 'image', repository, tag, layers, layerBytes, seed }),
    stats: async () => await call<UpstreamStats>({ cmd: 'stats' }),
    stop: async () => {
      if (child.exitCode !== null) return
      child.kill('SIGTERM')
      await new Promise(resolve => child.once('exit', resolve))
    },
  }
}

/** Counters added between two snapshots, for paths matching `match`. */
export function delta (before: UpstreamStats, after: UpstreamStats, match: (key: string) => boolean): { byMethod: Record<string, number>, bytes: number } {
  const byMethod: Record<string, number> = {}
  let bytes = 0
  for (const [key, v] of Object.entries(after)) {
    if (!match(key)) continue
    const b = before[key] ?? { count: 0, bytes: 0 }
    const n = v.count - b.count
    if (n === 0 && v.bytes === b.bytes) continue
    const method = key.split(' ')[0]
    byMethod[method] = (byMethod[method] ?? 0) + n
    bytes += v.bytes - b.bytes
  }
  return { byMethod, bytes }
}

// ---- the child process ----------------------------------------------------------------------

interface Body { size: number, chunk: (start: number, end: number) => Buffer }
interface Manifest { body: Buffer, mediaType: string, digest: string }

function serve (): void {
  const SIZE = Number(process.env.UPSTREAM_SIZE)
  const RATE = Number(process.env.UPSTREAM_RATE)
  const base = Buffer.allocUnsafe(SIZE)
  for (let i = 0; i + 4 <= SIZE; i += 4) base.writeUInt32LE((i * 2654435761) >>> 0, i)
  const head = SIZE - 8
  const shared: Hash = createHash('sha256').update(base.subarray(0, head))
  const blobs = new Map<string, Body>()
  const manifests = new Map<string, Manifest>() // `${repository}:${reference}`
  const stats: UpstreamStats = {}
  const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`
  const small = (data: Buffer): string => { const d = sha(data); blobs.set(d, { size: data.length, chunk: (s, e) => data.subarray(s, e) }); return d }
  const variant = (key: string): string => {
    const tail = createHash('sha256').update(key).digest().subarray(0, 8)
    const d = `sha256:${shared.copy().update(tail).digest('hex')}`
    blobs.set(d, { size: SIZE, chunk: (s, e) => e <= head ? base.subarray(s, e) : Buffer.concat([base.subarray(s, Math.min(e, head)), tail.subarray(Math.max(0, s - head), e - head)]) })
    return d
  }
  const addManifest = (repository: string, tag: string, m: object): string => {
    const body = Buffer.from(JSON.stringify(m))
    const man = { body, mediaType: MEDIA.manifest, digest: sha(body) }
    manifests.set(`${repository}:${tag}`, man)
    manifests.set(`${repository}:${man.digest}`, man)
    return man.digest
  }
  const image = (repository: string, tag: string, layers: Buffer[], config: object): string => {
    const cfg = Buffer.from(JSON.stringify(config))
    return addManifest(repository, tag, {
      schemaVersion: 2,
      mediaType: MEDIA.manifest,
      config: { mediaType: MEDIA.config, digest: small(cfg), size: cfg.length },
      layers: layers.map(l => ({ mediaType: MEDIA.layer, digest: blobs.has(sha(l)) ? sha(l) : small(l), size: l.length })),
    })
  }
  const config = (diffIds: string[]): object => ({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/true'] }, rootfs: { type: 'layers', diff_ids: diffIds } })

  // The bench image: one small config and the big blob as its layer (its diff_id is not checked on HEAD/GET by tag).
  const benchDigest = variant('bench')
  const benchCfg = Buffer.from(JSON.stringify(config([benchDigest])))
  addManifest('library/bench', 'latest', {
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config: { mediaType: MEDIA.config, digest: small(benchCfg), size: benchCfg.length },
    layers: [{ mediaType: MEDIA.layer, digest: benchDigest, size: SIZE }],
  })

  const count = (key: string, bytes: number): void => { const s = stats[key] ??= { count: 0, bytes: 0 }; s.bytes += bytes }
  const send = (req: IncomingMessage, res: ServerResponse, key: string, body: Body, headers: Record<string, string | number>): void => {
    res.writeHead(200, { ...headers, 'content-length': body.size })
    if (req.method === 'HEAD') { res.end(); return }
    const paced = RATE > 0 && !/-unthrottled\//.test(req.url ?? '')
    const started = performance.now()
    let off = 0
    const next = (): void => {
      while (off < body.size && !res.destroyed) {
        const wait = paced ? started + (off / RATE) * 1000 - performance.now() : 0
        if (wait > 1) { setTimeout(next, wait); return }
        const end = Math.min(body.size, off + SLICE)
        const ok = res.write(body.chunk(off, end))
        count(key, end - off)
        off = end
        if (!ok) { res.once('drain', next); return }
      }
      if (!res.destroyed) res.end()
    }
    next()
  }
  const server = https.createServer({ cert: readFileSync(`${FIXTURES}upstream.crt`), key: readFileSync(`${FIXTURES}upstream.key`), requestTimeout: 0, keepAliveTimeout: 60_000 }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    const key = `${req.method} ${path}`
    const s = stats[key] ??= { count: 0, bytes: 0 }
    s.count++
    if (path === '/v2/' || path === '/v2') { res.writeHead(200, { 'content-type': 'application/json', 'content-length': 2 }); res.end(req.method === 'HEAD' ? undefined : '{}'); return }
    let m = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(path)
    const known = m !== null ? blobs.get(m[2]) : undefined
    if (m !== null && known !== undefined && (req.method === 'GET' || req.method === 'HEAD')) {
      send(req, res, key, known, { 'content-type': 'application/octet-stream', 'docker-content-digest': m[2] })
      return
    }
    m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(path)
    const man = m !== null ? manifests.get(`${m[1].replace(/-unthrottled$/, '')}:${decodeURIComponent(m[2])}`) : undefined
    if (man !== undefined && (req.method === 'GET' || req.method === 'HEAD')) {
      send(req, res, key, { size: man.body.length, chunk: (a, b) => man.body.subarray(a, b) }, { 'content-type': man.mediaType, 'docker-content-digest': man.digest })
      return
    }
    const err = Buffer.from(JSON.stringify({ errors: [{ code: m !== null ? 'MANIFEST_UNKNOWN' : 'BLOB_UNKNOWN', message: 'unknown' }] }))
    res.writeHead(404, { 'content-type': 'application/json', 'content-length': err.length })
    res.end(req.method === 'HEAD' ? undefined : err)
  })
  // Connection reuse shows here: one count per TLS handshake the upstream completed.
  server.on('secureConnection', () => { (stats['TLS connections'] ??= { count: 0, bytes: 0 }).count++ })
  process.on('message', (c: Command & { id: number }) => {
    let result: unknown
    if (c.cmd === 'variant') result = variant(c.key)
    else if (c.cmd === 'stats') result = stats
    else {
      const layers: Buffer[] = []
      const diffIds: string[] = []
      for (let i = 0; i < c.layers; i++) {
        const key = createHash('sha256').update(`${c.seed}:${i}`).digest()
        const data = createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(c.layerBytes))
        const t = tar([{ path: `layer${i}`, type: 'dir', mode: 0o755 }, { path: `layer${i}/data.bin`, type: 'file', mode: 0o644, data }])
        diffIds.push(sha(t))
        layers.push(gzipSync(t, { level: 1 }))
      }
      result = image(c.repository, c.tag, layers, config(diffIds))
    }
    process.send!({ id: c.id, result })
  })
  process.once('SIGTERM', () => { server.closeAllConnections(); server.close(); process.exit(0) })
  server.listen(Number(process.env.UPSTREAM_PORT), '127.0.0.1', () => process.send!({ ready: benchDigest }))
}

if (process.argv.includes('--serve')) serve()
