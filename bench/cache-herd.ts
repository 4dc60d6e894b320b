/**
 * The pull-through cache under a herd: 8 clients ask for the same uncached 512 MiB blob at once,
 * from an upstream throttled to ~100 MB/s. Prints upstream fetches, each client's TTFB and total,
 * crossdock's peak RSS, then hit throughput vs a direct TLS GET and miss throughput vs a direct GET
 * of the same throttled upstream. Prints figures; asserts nothing.
 *
 *   bench (this process): throttled TLS upstream + clients ──CONNECT──► child: proxy door + cache
 *
 * The child runs the same composition as test/integration/cache/harness.ts (app.ts does not wire
 * the cache yet), so its /proc figures are crossdock's alone.
 * Run: npx tsx bench/cache-herd.ts   (BLOB_MIB=… and RATE_MBPS=… override the defaults)
 */
import https from 'node:https'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { FIXTURES, MiB, TEST_CA, fetchCounting, fmt } from './lib.js'

const HOST = 'registry-1.docker.io'
const SIZE = Number(process.env.BLOB_MIB ?? 512) * MiB
const RATE = Number(process.env.RATE_MBPS ?? 100) * 1e6
const CLIENTS = 8

async function serve (upstreamPort: number, dir: string): Promise<void> {
  const { pino } = await import('pino')
  const { loadConfig } = await import('../src/config/index.js')
  const { loadOrCreateCa } = await import('../src/tls/ca.js')
  const { LeafCertMinter } = await import('../src/tls/leaf-certs.js')
  const { Dialer } = await import('../src/upstream/dialer.js')
  const { UpstreamClient } = await import('../src/upstream/upstream-client.js')
  const { MirrorRouter } = await import('../src/mirror/mirror-router.js')
  const { createProxyServer } = await import('../src/proxy/proxy-server.js')
  const { createDirector } = await import('../src/proxy/director.js')
  const { openCacheStore } = await import('../src/cache/cache-store.js')
  const { createPullThrough } = await import('../src/mirror/pull-through.js')
  const config = loadConfig({ CA_DIR: join(dir, 'ca'), CACHE_DIR: join(dir, 'cache'), UPSTREAM_CA_FILE: join(FIXTURES, 'test-ca.crt'), UPSTREAM_CONNECT_TO: `${HOST}:443:127.0.0.1:${upstreamPort}`, CACHE_MIN_FREE: '0' }, dir)
  const log = pino({ level: 'warn' }, pino.destination(2))
  const ca = await loadOrCreateCa({ caDir: config.caDir, log })
  const minter = new LeafCertMinter(ca)
  await minter.init()
  const dialer = new Dialer({ connectTo: config.upstreamConnectTo, disableIpv6: false, connectTimeoutMs: config.timeouts.connectMs })
  const upstream = new UpstreamClient({ dialer, verifySsl: true, upstreamCaFile: config.upstreamCaFile, connectTimeoutMs: config.timeouts.connectMs, readTimeoutMs: config.timeouts.readMs })
  const cache = await openCacheStore({ dir: config.cacheDir, maxSize: config.cache.maxSize, inactiveMs: config.cache.inactiveMs, idleTimeoutMs: config.timeouts.readMs, log })
  const mirror = new MirrorRouter(upstream, createPullThrough({ manifestTiers: config.cache, log, cache, upstream }))
  const proxy = createProxyServer({
    log,
    dialer,
    secureContextFor: async host => await minter.secureContextFor(host),
    shouldIntercept: a => a.host === HOST,
    allowedPorts: new Set(config.connectAllowedPorts),
    clientHeaderTimeoutMs: config.timeouts.clientHeaderMs,
    keepAliveTimeoutMs: config.timeouts.keepAliveMs,
    onIntercepted: async (req, res, target) => { await mirror.handle(req, res, { host: target.host, door: 'proxy', path: req.url ?? '/', allowPush: false }) },
    director: createDirector({ caCertPem: () => ca.certPem, proxyPort: 0, extraRoutes: {} }),
  })
  proxy.server.listen(0, '127.0.0.1', () => { process.stdout.write(`ready ${(proxy.server.address() as AddressInfo).port}\n`) })
}

/** A TLS upstream serving one generated blob, throttled under /v2/ and at full speed under /direct/. */
async function startUpstream (): Promise<{ port: number, digest: string, digest2: string, blobGets: () => number, close: () => void }> {
  const blob = Buffer.allocUnsafe(SIZE)
  for (let i = 0; i < SIZE; i += 4) blob.writeUInt32LE((i * 2654435761) >>> 0, i)
  const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`
  // A second blob (for a single-client miss) sharing all but its first 4 bytes with the first.
  const prefix2 = Buffer.from('blb2')
  const digest2 = `sha256:${createHash('sha256').update(prefix2).update(blob.subarray(4)).digest('hex')}`
  let gets = 0
  const server = https.createServer({ cert: readFileSync(join(FIXTURES, 'upstream.crt')), key: readFileSync(join(FIXTURES, 'upstream.key')) }, (req, res) => {
    const throttled = req.url?.startsWith('/v2/') === true
    if (throttled && req.method === 'GET') gets++
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': SIZE, 'docker-content-digest': digest })
    if (req.method === 'HEAD') { res.end(); return }
    const slice = 256 * 1024
    const started = performance.now()
    let off = 0
    if (req.url?.endsWith(digest2) === true) { res.write(prefix2); off = 4 }
    const next = (): void => {
      while (off < SIZE && !res.destroyed) {
        const wait = throttled ? started + (off / RATE) * 1000 - performance.now() : 0
        if (wait > 1) { setTimeout(next, wait); return }
        const end = Math.min(SIZE, (Math.floor(off / slice) + 1) * slice)
        const ok = res.write(blob.subarray(off, end))
        off = end
        if (!ok) { res.once('drain', next); return }
      }
      if (!res.destroyed) res.end()
    }
    next()
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as AddressInfo).port, digest, digest2, blobGets: () => gets, close: () => { server.closeAllConnections(); server.close() } }
}

async function main (): Promise<void> {
  const up = await startUpstream()
  const dir = await mkdtemp(join(tmpdir(), 'crossdock-herd-'))
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--serve', String(up.port), dir], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    const proxyPort = await new Promise<number>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => { const m = /ready (\d+)/.exec(d.toString()); if (m !== null) resolve(Number(m[1])) })
      child.once('exit', code => reject(new Error(`server exited ${code}`)))
    })
    const ca = await readFile(join(dir, 'ca', 'ca.crt'), 'utf8')
    const peakRss = (): number => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024
    const mbps = (bytes: number, s: number): number => bytes / s / 1e6
    const path = `/v2/library/bench/blobs/${up.digest}`
    console.log(`blob ${SIZE / MiB} MiB, upstream throttled to ${RATE / 1e6} MB/s, ${CLIENTS} clients`)

    const directSlow = await fetchCounting({ host: HOST, path, ca: TEST_CA, port: up.port })
    const directFast = await fetchCounting({ host: HOST, path: `/direct${path}`, ca: TEST_CA, port: up.port })
    const before = up.blobGets()
    const rssBefore = peakRss()
    const herd = await Promise.all(Array.from({ length: CLIENTS }, async () => await fetchCounting({ host: HOST, path, ca, proxyPort })))
    console.log(`herd: upstream GETs ${up.blobGets() - before}; crossdock peak RSS ${fmt(peakRss(), 0)} MiB (before the herd ${fmt(rssBefore, 0)} MiB)`)
    herd.forEach((r, i) => console.log(`  client ${i + 1}: TTFB ${fmt(r.ttfbSeconds * 1000, 0)} ms, total ${fmt(r.seconds, 2)} s, ${fmt(mbps(r.bytes, r.seconds))} MB/s, ${r.bytes === SIZE ? 'complete' : `SHORT ${r.bytes}`}`))
    const herdMbps = Math.min(...herd.map(r => mbps(r.bytes, r.seconds)))
    const single = await fetchCounting({ host: HOST, path: `/v2/library/bench/blobs/${up.digest2}`, ca, proxyPort })
    const missMbps = mbps(single.bytes, single.seconds)
    const hits = []
    for (let i = 0; i < 3; i++) hits.push(await fetchCounting({ host: HOST, path, ca, proxyPort }))
    const hitMbps = Math.max(...hits.map(r => mbps(r.bytes, r.seconds)))
    console.log(`hit: ${fmt(hitMbps)} MB/s vs direct TLS GET ${fmt(mbps(directFast.bytes, directFast.seconds))} MB/s: ratio ${fmt(hitMbps / mbps(directFast.bytes, directFast.seconds), 2)} (best of 3; hit TTFB ${fmt(hits[0].ttfbSeconds * 1000, 1)} ms)`)
    const slow = mbps(directSlow.bytes, directSlow.seconds)
    console.log(`miss, one client: ${fmt(missMbps)} MB/s vs direct GET of the throttled upstream ${fmt(slow)} MB/s: ratio ${fmt(missMbps / slow, 2)} (TTFB ${fmt(single.ttfbSeconds * 1000, 0)} ms)`)
    console.log(`miss, slowest of the herd: ${fmt(herdMbps)} MB/s: ratio ${fmt(herdMbps / slow, 2)}`)
    console.log(`crossdock peak RSS overall ${fmt(peakRss(), 0)} MiB; upstream GETs overall (through crossdock) ${up.blobGets() - before}`)
  } finally {
    child.kill('SIGTERM')
    await new Promise(resolve => child.once('exit', resolve))
    up.close()
    await rm(dir, { recursive: true, force: true })
  }
}

if (process.argv[2] === '--serve') await serve(Number(process.argv[3]), process.argv[4])
else await main()
