/**
 * Scenario 6, crossdock alone (the peers have no MITM door to compare):
 *   a. what a client feels of leaf minting: CONNECT + TLS handshake to a host crossdock has never
 *      seen (mint), then to the same hosts again (leaf cached);
 *   b. a full `docker pull` of a 5-layer image through the MITM door with the real dockerd: cold
 *      (crossdock fetches every blob), then warm (`docker rmi`, pull again: every blob is a hit).
 */
import http from 'node:http'
import tls from 'node:tls'
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startDockerd, type Dockerd } from '../../test/helpers/e2e/dockerd.js'
import type { Scope } from '../../test/helpers/e2e/scope.js'
import { median, percentile } from './stats.js'
import { delta, HUB, type Upstream } from './upstream.js'
import type { Figures } from './pull-scenarios.js'

async function handshakeMs (proxyPort: number, host: string, ca: string): Promise<number> {
  const t0 = performance.now()
  const raw = await new Promise<import('node:net').Socket>((resolve, reject) => {
    http.request({ host: '127.0.0.1', port: proxyPort, method: 'CONNECT', path: `${host}:443`, agent: false })
      .once('connect', (res, s) => res.statusCode === 200 ? resolve(s) : reject(new Error(`CONNECT ${host} → ${res.statusCode}`)))
      .once('error', reject).end()
  })
  const sock = tls.connect({ socket: raw, servername: host, ca })
  await new Promise<void>((resolve, reject) => { sock.once('secureConnect', resolve); sock.once('error', reject) })
  const ms = performance.now() - t0
  sock.destroy()
  return ms
}

export const mintHosts = (rep: number, n: number): string[] => Array.from({ length: n }, (_, i) => `mint-${rep}-${i}.bench.test`)

/** 6a. `hosts` (in REGISTRIES, never contacted) one after another, then again. */
export async function mintLatency (proxyPort: number, caFile: string, hosts: string[]): Promise<Figures> {
  const ca = readFileSync(caFile, 'utf8')
  const fresh: number[] = []
  for (const h of hosts) fresh.push(await handshakeMs(proxyPort, h, ca))
  const known: number[] = []
  for (const h of hosts) known.push(await handshakeMs(proxyPort, h, ca))
  return { newP50: median(fresh), newP90: percentile(fresh, 0.9), newMax: Math.max(...fresh), knownP50: median(known) }
}

/** A Scope (test/helpers/e2e) without tap: cleanups run by `close()`, last first. */
export function benchScope (dir: string): Scope & { close: () => Promise<void> } {
  const cleanups: Array<() => Promise<void> | void> = []
  return {
    dir,
    path: (...parts) => join(dir, ...parts),
    defer: (_what, fn) => { cleanups.push(fn) },
    attachLog: () => {},
    close: async () => {
      for (const fn of cleanups.reverse()) {
        try { await fn() } catch (err) { console.log(`    cleanup failed: ${String(err)}`) }
      }
    },
  }
}

export interface DockerPullSetup { dockerd: Dockerd, scope: Scope & { close: () => Promise<void> } }

export async function startBenchDockerd (dir: string, proxyPort: number, caFile: string): Promise<DockerPullSetup> {
  mkdirSync(dir, { recursive: true })
  const scope = benchScope(dir)
  const dockerd = await startDockerd(scope, { httpsProxy: `http://127.0.0.1:${proxyPort}`, trust: [caFile] })
  return { dockerd, scope }
}

/** 6b. One image, pulled cold then warm; seconds each and the upstream blob GETs each caused. */
export async function dockerPull (up: Upstream, d: Dockerd, repository: string, tag: string, layers: number, layerBytes: number, seed: string): Promise<Figures> {
  await up.image(repository, tag, layers, layerBytes, seed)
  const ref = `${HUB}/${repository}:${tag}`
  const pull = async (): Promise<{ seconds: number, blobGets: number }> => {
    const before = await up.stats()
    const t0 = performance.now()
    await d.dockerOk(['pull', '-q', ref], { timeoutMs: 300_000 })
    const seconds = (performance.now() - t0) / 1000
    const got = delta(before, await up.stats(), k => k.startsWith('GET ') && k.includes('/blobs/'))
    return { seconds, blobGets: got.byMethod.GET ?? 0 }
  }
  const cold = await pull()
  await d.dockerOk(['rmi', ref])
  const warm = await pull()
  await d.dockerOk(['rmi', ref])
  return { coldS: cold.seconds, warmS: warm.seconds, coldBlobGets: cold.blobGets, warmBlobGets: warm.blobGets }
}
