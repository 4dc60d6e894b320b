/**
 * Shared pieces for benchmarks: a fast TLS upstream that generates N bytes without buffering them,
 * a crossdock child process with /proc-based CPU and peak-RSS readings, and a streaming CONNECT+TLS
 * client with an optional read-rate limit. Benchmarks print figures; they assert nothing.
 */
import https from 'node:https'
import http from 'node:http'
import tls from 'node:tls'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../', import.meta.url))
export const FIXTURES = join(ROOT, 'test/fixtures')
export const TEST_CA = readFileSync(join(FIXTURES, 'test-ca.crt'), 'utf8')
export const MiB = 1024 * 1024
export const GiB = 1024 * MiB

/** An HTTPS server answering every GET with `size` pseudo-random bytes, generated as it streams. */
export async function startByteServer (size: number): Promise<{ port: number, close: () => void }> {
  const block = Buffer.alloc(MiB)
  for (let i = 0; i < block.length; i++) block[i] = (i * 2654435761) >>> 24
  const server = https.createServer({ cert: readFileSync(join(FIXTURES, 'upstream.crt')), key: readFileSync(join(FIXTURES, 'upstream.key')) }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size })
    let sent = 0
    const pump = (): void => {
      while (sent < size) {
        const n = Math.min(block.length, size - sent)
        sent += n
        if (!res.write(n === block.length ? block : block.subarray(0, n))) { res.once('drain', pump); return }
      }
      res.end()
    }
    pump()
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as AddressInfo).port, close: () => { server.closeAllConnections(); server.close() } }
}

export interface Crossdock {
  proc: ChildProcess
  proxyPort: number
  /** The registry door's port (hosted registry), from the same startup line. */
  registryPort: number
  dir: string
  caPem: string
  /** user+system CPU seconds of the process so far. */
  cpuSeconds: () => number
  /** Peak resident set size in MiB (VmHWM). */
  peakRssMiB: () => number
  rssMiB: () => number
  stop: () => Promise<void>
}

/** `nodeArgs` go before the script (e.g. `--cpu-prof`, written when the process exits on `stop`). */
export async function startCrossdock (env: Record<string, string>, opts: { nodeArgs?: string[] } = {}): Promise<Crossdock> {
  const dir = await mkdtemp(join(tmpdir(), 'crossdock-bench-'))
  const proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), join(ROOT, 'dist/cli.js'), 'serve'], {
    env: { ...process.env, PROXY_PORT: '0', REGISTRY_PORT: '0', LISTEN_HOST: '127.0.0.1', CA_DIR: join(dir, 'ca'), CACHE_DIR: join(dir, 'cache'), REGISTRY_STORAGE_DIR: join(dir, 'registry'), UPSTREAM_CA_FILE: join(FIXTURES, 'test-ca.crt'), LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const [proxyPort, registryPort] = await new Promise<[number, number]>((resolve, reject) => {
    let out = ''
    const onData = (d: Buffer): void => {
      out += d.toString()
      const m = /proxy door [^ ]*:(\d+), registry door [^ ]*:(\d+)/.exec(out)
      if (m !== null) { proc.stdout!.off('data', onData); proc.stdout!.resume(); resolve([Number(m[1]), Number(m[2])]) }
    }
    proc.stdout!.on('data', onData)
    proc.once('exit', code => reject(new Error(`crossdock exited ${code}: ${out}`)))
  })
  const stat = (): string[] => readFileSync(`/proc/${proc.pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
  const status = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024
  return {
    proc,
    proxyPort,
    registryPort,
    dir,
    caPem: readFileSync(join(dir, 'ca/ca.crt'), 'utf8'),
    cpuSeconds: () => { const s = stat(); return (Number(s[11]) + Number(s[12])) / 100 },
    peakRssMiB: () => status('VmHWM'),
    rssMiB: () => status('VmRSS'),
    stop: async () => { proc.kill('SIGTERM'); await new Promise(resolve => proc.once('exit', resolve)) },
  }
}

export interface FetchResult { bytes: number, seconds: number, ttfbSeconds: number }

/**
 * GETs https://host/path, directly (to `port`) or through a CONNECT proxy, counting bytes without
 * keeping them; `rateBytesPerSec` paces reads like a slow client (pause/resume).
 */
export async function fetchCounting (opts: { host: string, path: string, ca: string, port?: number, proxyPort?: number, rateBytesPerSec?: number }): Promise<FetchResult> {
  const started = performance.now()
  let socket: tls.TLSSocket
  if (opts.proxyPort !== undefined) {
    const raw = await new Promise<import('node:net').Socket>((resolve, reject) => {
      http.request({ host: '127.0.0.1', port: opts.proxyPort, method: 'CONNECT', path: `${opts.host}:443` })
        .once('connect', (res, s) => res.statusCode === 200 ? resolve(s) : reject(new Error(`CONNECT ${res.statusCode}`)))
        .once('error', reject).end()
    })
    socket = tls.connect({ socket: raw, servername: opts.host, ca: opts.ca, highWaterMark: 256 * 1024 } as tls.ConnectionOptions)
  } else {
    socket = tls.connect({ host: '127.0.0.1', port: opts.port, servername: opts.host, ca: opts.ca, highWaterMark: 256 * 1024 } as tls.ConnectionOptions)
  }
  await new Promise<void>((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject) })
  return await new Promise((resolve, reject) => {
    const req = http.request({ createConnection: () => socket, host: opts.host, path: opts.path, headers: { host: opts.host } }, res => {
      let bytes = 0
      let ttfb = -1
      res.on('data', (c: Buffer) => {
        if (ttfb < 0) ttfb = (performance.now() - started) / 1000
        bytes += c.length
        if (opts.rateBytesPerSec !== undefined) {
          const due = started + (bytes / opts.rateBytesPerSec) * 1000
          const wait = due - performance.now()
          if (wait > 5) { res.pause(); setTimeout(() => res.resume(), wait) }
        }
      })
      res.on('end', () => { socket.destroy(); resolve({ bytes, seconds: (performance.now() - started) / 1000, ttfbSeconds: ttfb }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

export function fmt (n: number, digits = 1): string {
  return n.toFixed(digits)
}
