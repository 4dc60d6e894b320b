/**
 * Upstream HTTP/2 vs HTTP/1.1 (UPSTREAM_HTTP2, issue 20): crossdock's UpstreamClient fetching
 * PARALLEL blobs at once from an upstream that speaks both (Node http2 with allowHTTP1, TLS, ALPN),
 * through the user-space WAN relay (bench/wan/relay.ts) at 50 ms RTT. Interleaved runs; medians.
 * Prints time to fetch them all, and TCP connections opened. Asserts nothing.
 *
 * Run alone: `npm run bench -- bench/upstream-h2.ts`.
 */
import http2 from 'node:http2'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { Dialer } from '../src/upstream/dialer.js'
import { UpstreamClient } from '../src/upstream/upstream-client.js'
import { FIXTURES, MiB } from './lib.js'
import { startWan } from './wan/relay.js'

const HOST = process.env.BENCH_HOST ?? '127.0.0.36'
const PARALLEL = Number(process.env.H2_PARALLEL ?? 8)
const SIZE = Number(process.env.H2_BLOB_MIB ?? 8) * MiB
const RUNS = Number(process.env.H2_RUNS ?? 3)

const SCENARIOS = [
  { name: '50 ms RTT, 50 Mbit/s per connection', delayMs: 25, linkBps: 0, connBps: 50e6 },
  { name: '50 ms RTT, 200 Mbit/s shared', delayMs: 25, linkBps: 200e6, connBps: 0 },
  { name: '50 ms RTT, unthrottled', delayMs: 25, linkBps: 0, connBps: 0 },
]

async function startH2Server (): Promise<{ port: number, close: () => void }> {
  const block = Buffer.alloc(MiB)
  for (let i = 0; i < block.length; i++) block[i] = (i * 2654435761) >>> 24
  const server = http2.createSecureServer({ cert: readFileSync(join(FIXTURES, 'upstream.crt')), key: readFileSync(join(FIXTURES, 'upstream.key')), allowHTTP1: true }, (req, res) => {
    if (req.url === '/v2/') { res.writeHead(200, { 'content-length': 2 }); res.end('{}'); return }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': SIZE })
    let sent = 0
    const pump = (): void => {
      while (sent < SIZE) {
        const n = Math.min(block.length, SIZE - sent)
        sent += n
        if (!res.write(block.subarray(0, n))) { res.once('drain', pump); return }
      }
      res.end()
    }
    pump()
  })
  await new Promise<void>(resolve => server.listen(0, HOST, resolve))
  return { port: (server.address() as AddressInfo).port, close: () => { server.close() } }
}

async function once (scenario: typeof SCENARIOS[number], h2: boolean, serverPort: number): Promise<{ ms: number, connections: number, protocol: string }> {
  const wan = await startWan({ host: HOST, target: { host: HOST, port: serverPort }, ...scenario })
  const dialer = new Dialer({ connectTo: [{ host: 'ghcr.io', port: 443, address: HOST, toPort: wan.port }], disableIpv6: true, connectTimeoutMs: 10_000 })
  const client = new UpstreamClient({ dialer, verifySsl: true, upstreamCaFile: join(FIXTURES, 'test-ca.crt'), connectTimeoutMs: 10_000, readTimeoutMs: 60_000, http2: h2 })
  // One request first, as a registry client's /v2/ ping: the connection (and its protocol) exists
  // before the parallel fetches; without it undici opens one connection per request even for h2.
  const ping = await client.request({ host: 'ghcr.io', method: 'GET', path: '/v2/' })
  for await (const _ of ping.body) { /* drain */ }
  const started = performance.now()
  let protocol = 'http/1.1'
  await Promise.all(Array.from({ length: PARALLEL }, async (_, i) => {
    const r = await client.request({ host: 'ghcr.io', method: 'GET', path: `/v2/x/blobs/${i}` })
    if (r.headers[':status'] !== undefined || r.headers['x-http2-stream-id'] !== undefined) protocol = 'h2'
    let n = 0
    for await (const c of r.body) n += (c as Buffer).length
    if (n !== SIZE) throw new Error(`short body: ${n}`)
  }))
  const ms = performance.now() - started
  await client.close()
  const connections = wan.connections
  await wan.close()
  return { ms, connections, protocol: h2 && connections === 1 ? 'h2' : protocol }
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] }

const server = await startH2Server()
console.log(`upstream HTTP/2 vs HTTP/1.1: ${PARALLEL} parallel blobs of ${SIZE / MiB} MiB, ${RUNS} interleaved runs; load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`)
console.log('| scenario | HTTP/1.1 s (median) | h2 s (median) | h2 / h1 per run | connections h1 / h2 |')
console.log('|---|---:|---:|---|---:|')
for (const sc of SCENARIOS) {
  const h1: Array<Awaited<ReturnType<typeof once>>> = []
  const h2: Array<Awaited<ReturnType<typeof once>>> = []
  for (let run = 0; run < RUNS; run++) {
    h1.push(await once(sc, false, server.port))
    h2.push(await once(sc, true, server.port))
  }
  const ratios = h1.map((a, i) => (h2[i].ms / a.ms).toFixed(2)).join(', ')
  console.log(`| ${sc.name} | ${(median(h1.map(x => x.ms)) / 1000).toFixed(2)} | ${(median(h2.map(x => x.ms)) / 1000).toFixed(2)} | ${ratios} | ${median(h1.map(x => x.connections))} / ${median(h2.map(x => x.connections))} |`)
}
server.close()
