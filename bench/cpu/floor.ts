/**
 * The floor under crossdock's cold-path CPU (bench/cpu-per-byte.ts with CPB_FLOOR=1): what the same
 * blobs cost the bench process itself, fetched from the same distribution over the same loopback
 * TLS, part by part. Each variant adds one stage of what a cold fill does:
 *
 *   tls            TLS receive of a hand-written HTTP/1.1 GET, bytes only counted (a new
 *                  connection per blob: one handshake more per blob than the others pay)
 *   tls+sha256     … and hashed (the fill's digest check)
 *   undici+sha256  undici Agent.request, its body Readable piped into a hashing Writable (and
 *                  again with a 1 MiB highWaterMark for that Readable; undici's default: 64 KiB)
 *   undici data+sha256  the same body Readable, hashed in a 'data' listener (no Writable, no pipeline)
 *   dispatch+sha256  undici Agent.dispatch, chunks hashed in onResponseData (no body Readable)
 *   fill+reader    crossdock's own BlobFill on undici.request's body, as a cold pull has it (FillSink:
 *                  hash + 256 KiB writes to a staging file) and
 *                  a TailReader reading it back into recycled buffers, into a null sink
 *
 * CPU is process.cpuUsage() (every thread of this process: libuv's pool too); distribution's own
 * CPU is not in it. Variants interleave, so load drifts over all alike. Medians, ms per 100 MB.
 */
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import tls from 'node:tls'
import { Agent } from 'undici'
import { openCacheStore, type CacheStore } from '../../src/cache/cache-store.js'
import { TailReader } from '../../src/cache/tail-reader.js'
import { createSilentLogger } from '../../src/log.js'
import { parseDigest } from '../../src/oci/digest.js'
import { sendStream } from '../../src/util/send-stream.js'
import { median } from '../peers/stats.js'

export interface FloorOptions {
  /** `host:port` of the upstream (TLS, the fixture certificate). */
  upstream: string
  caFile: string
  repository: string
  blobs: Array<{ digest: string, size: number }>
  runs: number
}

type Fetch = (path: string, size: number) => Promise<number>

/** Hashes and counts what it is given; hands the chunk back at once. */
class HashSink extends Writable {
  readonly hash = createHash('sha256')
  n = 0
  override _write (chunk: Buffer, _enc: string, cb: () => void): void {
    this.hash.update(chunk)
    this.n += chunk.length
    cb()
  }
}

export async function measureFloor (o: FloorOptions): Promise<string> {
  const [host, port] = o.upstream.split(':')
  const ca = readFileSync(o.caFile, 'utf8')
  const agent = new Agent({ connect: { ca }, pipelining: 1 })
  const origin = `https://${o.upstream}`
  const dir = mkdtempSync(join(tmpdir(), 'cpb-floor-'))
  // A fresh cache per round of fills (opened outside the measured time): every fill is a miss.
  let cache: CacheStore | undefined
  const freshCache = async (): Promise<CacheStore> => {
    await cache?.close()
    cache = await openCacheStore({ dir: mkdtempSync(join(dir, 'cache-')), maxSize: 2 ** 40, inactiveMs: 0, log: createSilentLogger() })
    return cache
  }

  const rawTls = (hash: boolean): Fetch => async path => await new Promise((resolve, reject) => {
    const s = tls.connect({ host, port: Number(port), ca }, () => {
      s.write(`GET ${path} HTTP/1.1\r\nhost: ${o.upstream}\r\nconnection: close\r\n\r\n`)
    })
    const h = createHash('sha256')
    let n = 0
    s.on('data', (c: Buffer) => { n += c.length; if (hash) h.update(c) })
    s.once('end', () => resolve(n))
    s.once('error', reject)
  })
  const viaRequest = (highWaterMark?: number): Fetch => async path => {
    const res = await agent.request({ origin, path, method: 'GET', ...(highWaterMark !== undefined ? { highWaterMark } : {}) })
    const sink = new HashSink()
    await pipeline(res.body, sink)
    return sink.n
  }
  // The body Readable kept, the Writable and pipeline gone: 'data' handed straight to the hash.
  const viaData: Fetch = async path => {
    const res = await agent.request({ origin, path, method: 'GET' })
    const h = createHash('sha256')
    let n = 0
    res.body.on('data', (c: Buffer) => { h.update(c); n += c.length })
    await new Promise((resolve, reject) => { res.body.once('end', resolve); res.body.once('error', reject) })
    return n
  }
  const viaDispatch: Fetch = async path => await new Promise((resolve, reject) => {
    const h = createHash('sha256')
    let n = 0
    // undici takes a handler for its new API (onRequestStart …) or the old one (onConnect …).
    agent.dispatch({ origin, path, method: 'GET' }, {
      onRequestStart: () => {},
      onResponseStart: () => {},
      onResponseData: (_c, chunk) => { h.update(chunk); n += chunk.length },
      onResponseEnd: () => resolve(n),
      onResponseError: (_c, err) => reject(err),
    })
  })
  let fills = 0
  const viaFill: Fetch = async (path, size) => {
    const res = await agent.request({ origin, path, method: 'GET' })
    const digest = parseDigest(path.slice(path.lastIndexOf('/') + 1))
    const begun = (cache as CacheStore).blobs.beginFill(digest, res.body, { expectedSize: size })
    if (!('fill' in begun)) throw new Error(`bypass: ${begun.bypass}`)
    const reader = new TailReader(begun.fill)
    let n = 0
    const out = new Writable({ write (c: Buffer, _e, cb) { n += c.length; cb() } })
    await sendStream(reader, out, c => { reader.recycle(c) })
    await begun.fill.done
    fills++
    return n
  }
  const variants: Record<string, Fetch> = {
    tls: rawTls(false),
    'tls+sha256': rawTls(true),
    'undici+sha256': viaRequest(),
    'undici(hwm 1 MiB)+sha256': viaRequest(1 << 20),
    'undici data+sha256': viaData,
    'dispatch+sha256': viaDispatch,
    'fill+reader': viaFill,
  }
  const cpu = new Map<string, number[]>()
  let bytes = 0
  try {
    for (let run = 0; run <= o.runs; run++) {
      for (const [name, fetch] of Object.entries(variants)) {
        if (fetch === viaFill) await freshCache()
        const c0 = process.cpuUsage()
        let n = 0
        for (const b of o.blobs) n += await fetch(`/v2/${o.repository}/blobs/${b.digest}`, b.size)
        const c = process.cpuUsage(c0)
        if (run === 0) { bytes = n; continue } // the first run warms the JIT and the connection
        cpu.set(name, [...(cpu.get(name) ?? []), (c.user + c.system) / 1000])
      }
    }
  } finally {
    await agent.close()
    await cache?.close()
    rmSync(dir, { recursive: true, force: true })
  }
  const per100 = (ms: number): string => (ms * 100e6 / bytes).toFixed(0)
  const lines = [
    `\n## The floor: the bench process fetching the same ${(bytes / 1e6).toFixed(1)} MB from the upstream, one blob at a time (median of ${o.runs}; all in brackets; ${fills} fills)\n`,
    '| variant | ms / 100 MB |',
    '|---|---:|',
    ...[...cpu].map(([name, ms]) => `| ${name} | ${per100(median(ms))} (${ms.map(per100).join(', ')}) |`),
  ]
  return lines.join('\n')
}
