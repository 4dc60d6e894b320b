/**
 * Scenario 5: push then pull one big blob to a hosted registry (crossdock's registry door, or
 * distribution 2.8 hosted), the way docker does it: POST an upload, PATCH the bytes streamed in
 * one request, PUT `?digest=` to commit; then GET it back. MB/s each way and the registry's CPU.
 *
 * The body is generated (1 MiB blocks) and never held whole; each run's blob differs in its last
 * 8 bytes, and its digest continues a hash state computed once.
 */
import http from 'node:http'
import { createHash, type Hash } from 'node:crypto'
import type { Contender } from './contenders.js'
import { cpuSeconds } from './procstat.js'
import type { Figures } from './pull-scenarios.js'

const BLOCK = 1024 * 1024
const GiB = 1024 ** 3

export class GeneratedBlob {
  private readonly block = Buffer.alloc(BLOCK)
  private readonly prefix: Hash
  constructor (readonly size: number) {
    for (let i = 0; i + 4 <= BLOCK; i += 4) this.block.writeUInt32LE((i * 2246822519) >>> 0, i)
    this.prefix = createHash('sha256')
    for (let off = 0; off < size - 8; off += BLOCK) this.prefix.update(this.block.subarray(0, Math.min(BLOCK, size - 8 - off)))
  }

  /** Digest of the blob whose last 8 bytes are `tail`. */
  digest (tail: Buffer): string {
    return `sha256:${this.prefix.copy().update(tail).digest('hex')}`
  }

  /** Writes the blob to `out` respecting backpressure, then ends it. */
  async write (out: http.ClientRequest, tail: Buffer): Promise<void> {
    for (let off = 0; off < this.size;) {
      const n = Math.min(BLOCK, this.size - off)
      let chunk = this.block.subarray(0, n)
      if (off + n > this.size - 8) {
        chunk = Buffer.from(chunk)
        tail.copy(chunk, this.size - 8 - off)
      }
      off += n
      if (!out.write(chunk)) await new Promise(resolve => out.once('drain', resolve))
    }
    await new Promise<void>(resolve => out.end(resolve))
  }
}

interface Reply { status: number, headers: http.IncomingHttpHeaders, bytes: number }

async function call (port: number, method: string, path: string, body?: (req: http.ClientRequest) => Promise<void>, headers: Record<string, string> = {}): Promise<Reply> {
  return await new Promise<Reply>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, res => {
      let bytes = 0
      res.on('data', (c: Buffer) => { bytes += c.length })
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes }))
      res.once('error', reject)
    })
    req.once('error', reject)
    if (body === undefined) req.end()
    else body(req).catch(reject)
  })
}

function location (r: Reply, what: string): string {
  const loc = r.headers.location
  if (r.status !== 202 || typeof loc !== 'string') throw new Error(`${what}: ${r.status}, location ${String(loc)}`)
  const u = new URL(loc, 'http://127.0.0.1')
  return `${u.pathname}${u.search}`
}

export async function pushPull (c: Contender, blob: GeneratedBlob, key: string): Promise<Figures> {
  const port = c.endpoint.port
  const repo = 'bench/hosted'
  const tail = createHash('sha256').update(key).digest().subarray(0, 8)
  const digest = blob.digest(tail)
  const pids = c.pids()

  let cpu0 = cpuSeconds(pids)
  let t0 = performance.now()
  const started = await call(port, 'POST', `/v2/${repo}/blobs/uploads/`)
  const patchAt = location(started, 'POST uploads')
  const patched = await call(port, 'PATCH', patchAt, async req => { await blob.write(req, tail) }, { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' })
  const putAt = location(patched, 'PATCH')
  const sep = putAt.includes('?') ? '&' : '?'
  const put = await call(port, 'PUT', `${putAt}${sep}digest=${encodeURIComponent(digest)}`, undefined, { 'content-length': '0' })
  if (put.status !== 201) throw new Error(`${c.name}: PUT ?digest= → ${put.status}`)
  const pushS = (performance.now() - t0) / 1000
  const pushCpu = cpuSeconds(pids) - cpu0

  cpu0 = cpuSeconds(pids)
  t0 = performance.now()
  const got = await call(port, 'GET', `/v2/${repo}/blobs/${digest}`)
  const pullS = (performance.now() - t0) / 1000
  const pullCpu = cpuSeconds(pids) - cpu0
  if (got.status !== 200 || got.bytes !== blob.size) throw new Error(`${c.name}: GET blob → ${got.status}, ${got.bytes} bytes`)
  const gib = blob.size / GiB
  return { pushMBps: blob.size / pushS / 1e6, pullMBps: blob.size / pullS / 1e6, pushCpuPerGiB: pushCpu / gib, pullCpuPerGiB: pullCpu / gib }
}
