/**
 * A mixed load on a crossdock child process, shared by `bench/load-mixed.ts` (200 clients × 60 s,
 * figures) and `test/integration/reliability/load-short.test.ts` (50 × 10 s, assertions).
 *
 *   N clients, each a bounded loop until the deadline, picking one operation at a time:
 *     hit       registry door, pull-through blob already cached        (keep-alive agent)
 *     miss      registry door, pull-through blob never seen before     (fake upstream fills it)
 *     manifest  tag resolution, registry door or MITM (CONNECT + TLS per request)
 *     push      hosted: monolithic blob upload, manifest PUT, manifest GET
 *     tunnel    CONNECT to a host crossdock does not intercept, TLS end to end, one request
 *
 * Every name resolves to the in-process FakeUpstream on loopback (UPSTREAM_CONNECT_TO catch-all),
 * so nothing leaves 127/8. The crossdock under load is the built binary (`dist/cli.js serve`), so
 * its RSS (VmHWM) and open descriptors (/proc/<pid>/fd) are its own, not the test runner's.
 */
import http from 'node:http'
import tls from 'node:tls'
import { randomBytes, createHash } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { startCrossdock, type Crossdock } from '../../bench/lib.js'
import { FakeUpstream, TEST_CA_PEM } from './fake-upstream.js'
import { connectThrough, proxiedRequest } from './proxy-client.js'

export type Op = 'hit' | 'miss' | 'manifest' | 'push' | 'tunnel'
/** Relative weights of the operations (per pick). */
export const MIX: Record<Op, number> = { hit: 40, miss: 10, manifest: 20, push: 15, tunnel: 15 }

export interface LoadResult {
  clients: number
  seconds: number
  ops: Record<Op, number>
  /** Mean latency per operation kind, ms. */
  meanMs: Record<Op, number>
  /** crossdock's user+system CPU seconds during the run. */
  cpuSeconds: number
  errors: number
  /** The first few errors, for the report. */
  errorSamples: string[]
  /** Error-level lines crossdock logged during the run. */
  serverErrors: string[]
  rssMiB: { baseline: number, peak: number, after: number }
  fds: { baseline: number, peak: number, after: number }
}

export interface LoadTarget {
  crossdock: Crossdock
  up: FakeUpstream
  /** Open descriptors of the crossdock process now. */
  fds: () => number
  stop: () => Promise<void>
}

const IMAGES = 16
const HUB = 'registry-1.docker.io'
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

export async function startLoadTarget (env: Record<string, string> = {}): Promise<LoadTarget> {
  const up = new FakeUpstream()
  await up.start()
  for (let i = 0; i < IMAGES; i++) up.addImage(`library/img-${i}`, 'latest', randomBytes(64 * 1024))
  const crossdock = await startCrossdock({ UPSTREAM_CONNECT_TO: `::127.0.0.1:${up.port}`, CACHE_MIN_FREE: '0', REGISTRIES: 'ghcr.io', ...env })
  const pid = crossdock.proc.pid!
  return {
    crossdock,
    up,
    fds: () => readdirSync(`/proc/${pid}/fd`).length,
    stop: async () => { await crossdock.stop(); await up.stop() },
  }
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

/** Runs the mix for `seconds` with `clients` concurrent loops, then closes every client connection. */
export async function runMixedLoad (target: LoadTarget, opts: { clients: number, seconds: number, settleMs?: number }): Promise<LoadResult> {
  const { crossdock: cd, up } = target
  const serverErrors: string[] = []
  cd.proc.stdout!.on('data', (d: Buffer) => { for (const line of d.toString().split('\n')) if (line.includes('"level":50')) serverErrors.push(line.slice(0, 300)) })
  const warmAgent = new http.Agent({ keepAlive: true })
  const reg = registryClient(cd.registryPort, warmAgent)
  const expect = (what: string, got: number, want: number[]): void => { if (!want.includes(got)) throw new Error(`${what}: ${got}`) }

  // Warm the cache: every image's manifest and layer once, so `hit` has something to hit.
  const layers: string[] = []
  for (let i = 0; i < IMAGES; i++) {
    const m = await reg('GET', `/v2/docker.io/library/img-${i}/manifests/latest`, undefined, { accept: OCI_MANIFEST })
    expect('warm manifest', m.status, [200])
    const layer = JSON.parse(m.body.toString()).layers[0].digest as string
    expect('warm blob', (await reg('GET', `/v2/docker.io/library/img-${i}/blobs/${layer}`)).status, [200])
    layers.push(layer)
  }
  warmAgent.destroy()
  const baseline = await settledFds(target, Infinity, opts.settleMs ?? 10_000)
  const rssBaseline = cd.rssMiB()
  const hot = new http.Agent({ keepAlive: true, maxSockets: opts.clients })
  const regHot = registryClient(cd.registryPort, hot)

  const ops: Record<Op, number> = { hit: 0, miss: 0, manifest: 0, push: 0, tunnel: 0 }
  const busyMs: Record<Op, number> = { hit: 0, miss: 0, manifest: 0, push: 0, tunnel: 0 }
  let errors = 0
  const errorSamples: string[] = []
  let peakFds = baseline
  const fdSampler = setInterval(() => { peakFds = Math.max(peakFds, target.fds()) }, 200)
  const picks = (Object.entries(MIX) as Array<[Op, number]>).flatMap(([op, w]) => Array<Op>(w).fill(op))
  let serial = 0

  const run = async (op: Op, client: number): Promise<void> => {
    const i = (serial++) % IMAGES
    switch (op) {
      case 'hit': {
        const r = await regHot('GET', `/v2/docker.io/library/img-${i}/blobs/${layers[i]}`)
        expect('hit', r.status, [200])
        if (sha256(r.body) !== layers[i]) throw new Error('hit: wrong bytes')
        return
      }
      case 'miss': {
        const data = randomBytes(16 * 1024)
        const digest = up.addBlob(data)
        const r = await regHot('GET', `/v2/docker.io/library/img-${i}/blobs/${digest}`)
        expect('miss', r.status, [200])
        if (sha256(r.body) !== digest) throw new Error('miss: wrong bytes')
        return
      }
      case 'manifest': {
        const status = serial % 2 === 0
          ? (await regHot('GET', `/v2/docker.io/library/img-${i}/manifests/latest`, undefined, { accept: OCI_MANIFEST })).status
          : (await proxiedRequest({ proxyPort: cd.proxyPort, host: HUB, ca: cd.caPem, path: `/v2/library/img-${i}/manifests/latest`, headers: { accept: OCI_MANIFEST } })).status
        expect('manifest', status, [200])
        return
      }
      case 'push': {
        const blob = randomBytes(8 * 1024)
        const digest = sha256(blob)
        const name = `load/c${client}`
        expect('push blob', (await regHot('POST', `/v2/${name}/blobs/uploads/?digest=${digest}`, blob, { 'content-type': 'application/octet-stream' })).status, [201])
        const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest, size: blob.length }, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: blob.length }] }))
        expect('push manifest', (await regHot('PUT', `/v2/${name}/manifests/t${serial % 4}`, manifest, { 'content-type': OCI_MANIFEST })).status, [201])
        expect('pull pushed', (await regHot('GET', `/v2/${name}/manifests/${sha256(manifest)}`, undefined, { accept: OCI_MANIFEST })).status, [200])
        return
      }
      case 'tunnel': {
        const tunnel = await connectThrough(cd.proxyPort, 'tunnel.test:443')
        if (tunnel.status !== 200) { tunnel.socket.destroy(); throw new Error(`tunnel: CONNECT ${tunnel.status}`) }
        const s = tls.connect({ socket: tunnel.socket, servername: 'tunnel.test', ca: TEST_CA_PEM })
        try {
          const head = await new Promise<string>((resolve, reject) => {
            let got = ''
            s.once('secureConnect', () => s.write('GET /v2/ HTTP/1.1\r\nHost: tunnel.test\r\nConnection: close\r\n\r\n'))
            s.on('data', (d: Buffer) => { got += d.toString('latin1') })
            s.once('end', () => resolve(got))
            s.once('error', reject)
          })
          expect('tunnel', Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), [200])
        } finally { s.destroy() }
      }
    }
  }

  const started = performance.now()
  const cpuBefore = cd.cpuSeconds()
  const deadline = Date.now() + opts.seconds * 1000
  await Promise.all(Array.from({ length: opts.clients }, async (_, client) => {
    for (let k = 0; Date.now() < deadline; k++) {
      const op = picks[(client * 7919 + k * 104729) % picks.length]
      const t0 = performance.now()
      try {
        await run(op, client)
        ops[op]++
        busyMs[op] += performance.now() - t0
      } catch (err) {
        errors++
        if (errorSamples.length < 10) errorSamples.push(`${op}: ${(err as Error).message}`)
      }
    }
  }))
  const seconds = (performance.now() - started) / 1000
  const cpuSeconds = cd.cpuSeconds() - cpuBefore
  const meanMs = Object.fromEntries((Object.keys(ops) as Op[]).map(op => [op, ops[op] > 0 ? busyMs[op] / ops[op] : 0])) as Record<Op, number>
  clearInterval(fdSampler)
  const peakRss = cd.peakRssMiB()
  // Close the clients' keep-alive sockets; crossdock's side then closes too.
  hot.destroy()
  const after = await settledFds(target, baseline, opts.settleMs ?? 10_000)
  return { clients: opts.clients, seconds, ops, meanMs, cpuSeconds, errors, errorSamples, serverErrors, rssMiB: { baseline: rssBaseline, peak: peakRss, after: cd.rssMiB() }, fds: { baseline, peak: peakFds, after } }
}

type RegistryClient = (method: string, path: string, body?: Buffer, headers?: Record<string, string>) => Promise<{ status: number, body: Buffer }>

/** Whole-body requests to the registry door over `agent` (explicit Content-Length on bodies). */
function registryClient (port: number, agent: http.Agent): RegistryClient {
  return async (method, path, body, headers = {}) => await new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent, headers: { ...headers, ...(body !== undefined ? { 'content-length': String(body.length) } : {}) } }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/**
 * The process's descriptor count once it stops changing (or reaches `target`), polled every
 * 100 ms for at most `maxMs`: closes on the far side of a socket take a moment to be seen.
 */
async function settledFds (t: LoadTarget, target: number, maxMs: number): Promise<number> {
  let last = t.fds()
  let stable = 0
  for (const end = Date.now() + maxMs; Date.now() < end;) {
    await new Promise(resolve => setTimeout(resolve, 100))
    const now = t.fds()
    if (now <= target) return now
    stable = now === last ? stable + 1 : 0
    last = now
    if (target === Infinity && stable >= 5) return now
  }
  return last
}
