/**
 * Where a cold ctr pull through the registry door spends its time (issue 20): one ctr pull direct,
 * one cold and one warm through crossdock (hosts.toml mirror), one direct again, from distribution
 * 2.8 behind the WAN relay (25 ms each way, 50 Mbit/s per connection; DELAY and CONNBPS change
 * them). Prints ctr's own "unpacking … done: N s" (containerd unpacks after every blob has
 * arrived) and crossdock's request log per blob: start and end after the pull began, cache
 * status, bytes. CTR_LINES=1 adds ctr's --debug requests (whole-second timestamps only).
 * Run: `npm run bench -- bench/wan/ctr-trace.ts` (root, private namespace); addresses .51/.52.
 */
import { writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { createScope, startDistribution, seedImage, startContainerd, startCrossdock, FIXTURE, freePort, type Scope } from '../../test/helpers/e2e/index.js'
import { startWan } from './relay.js'
if (process.env.CROSSDOCK_NETNS !== '1') { console.log('ctr-trace: skipped (needs root and the private network namespace of `npm run bench`)'); process.exit(0) }
const UP = '127.0.0.51'; const CD = '127.0.0.52'; const HUB = 'registry-1.docker.io'; const IMAGE = 'docker.io/library/wan:1'
const cleanups: Array<() => Promise<void>> = []
const scope: Scope = createScope({ teardown: (fn: () => Promise<void>) => { cleanups.push(fn) }, passing: () => true, comment: console.log, fail: console.log } as never, 'ctrtrace')
const upstream = await startDistribution(scope, { host: UP, name: 'upstream' })
const image = await seedImage(scope, upstream, 'library/wan', '1', { seed: 'wan', randomBytes: Math.round(10.5 * 1048576), randomLayers: 10 })
const wan = await startWan({ host: UP, port: 443, target: { host: UP, port: Number(upstream.address.split(':')[1]) }, delayMs: Number(process.env.DELAY ?? 25), linkBps: 0, connBps: Number(process.env.CONNBPS ?? 50e6) })
const registryPort = await freePort(CD)
const ctd = await startContainerd(scope)
const directHosts = ctd.writeHostsDir({ 'docker.io': `server = "https://${HUB}"\n[host."https://${UP}:443"]\n  capabilities = ["pull", "resolve"]\n  ca = "${FIXTURE.testCa}"\n` })
const mirrorHosts = scope.path('mirror-certs.d')
mkdirSync(join(mirrorHosts, 'docker.io'), { recursive: true })
writeFileSync(join(mirrorHosts, 'docker.io', 'hosts.toml'), `server = "https://${HUB}"\n[host."http://${CD}:${registryPort}"]\n  capabilities = ["pull", "resolve"]\n`)
const forget = async (): Promise<void> => {
  await ctd.ctr(['images', 'rm', IMAGE]); await ctd.ctr(['content', 'prune', 'references'])
  const left = (await ctd.ctr(['content', 'ls', '-q'])).stdout.split('\n').filter(Boolean)
  if (left.length > 0) await ctd.ctr(['content', 'rm', ...left])
}
const names = new Map<string, string>(image.layers.map((l, i) => [l.digest, `L${i}`] as [string, string]))
const short = (s: string): string => s.replace(/sha256:[0-9a-f]{64}/g, d => names.get(d) ?? d.slice(7, 19))
async function pullTraced (label: string, hosts: string, cd?: Awaited<ReturnType<typeof startCrossdock>>): Promise<void> {
  await forget()
  const logFrom = cd?.logs.length ?? 0
  const t0 = Date.now()
  const r = await ctd.ctr(['--debug', 'images', 'pull', '--hosts-dir', hosts, IMAGE], { timeoutMs: 600_000 })
  const t1 = Date.now()
  console.log(`\n### ${label}: ${(t1 - t0) / 1000} s (exit ${r.code})`)
  console.log(r.stdout.split('\n').filter(l => /elapsed|unpack|done/.test(l)).slice(-4).join('\n'))
  for (const line of r.stderr.split('\n')) {
    const m = /time="([^"]+)" level=(\w+) msg="((?:[^"\\]|\\.)*)"(.*)/.exec(line)
    if (m === null) continue
    const t = Date.parse(m[1]) - t0
    if (process.env.CTR_LINES !== '1') continue
    console.log(`ctr +${String(t).padStart(5)} ${m[3].slice(0, 60)} ${short(m[4]).slice(0, 200)}`)
  }
  if (cd !== undefined) {
    await new Promise(resolve => setTimeout(resolve, 500))
    for (const l of cd.logs.slice(logFrom)) {
      if (l.msg !== 'request') continue
      const end = (typeof l.time === 'number' ? l.time : Date.parse(String(l.time))) - t0
      console.log(`cd  end +${String(end).padStart(5)} start +${String(end - Number(l.ms)).padStart(5)} ${l.method} ${short(String(l.path))} ${l.status} ${l.cacheStatus ?? ''} ${l.bytes} B ${l.ms} ms`)
    }
  }
}
try {
  await pullTraced('direct', directHosts)
  const cd = await startCrossdock(scope, { host: CD, name: 'cd', registryPort, connectTo: { [`${HUB}:443`]: `${UP}:443` }, env: { LOG_LEVEL: 'info' } })
  await pullTraced('crossdock cold', mirrorHosts, cd)
  await pullTraced('crossdock warm', mirrorHosts, cd)
  await cd.stop()
  await pullTraced('direct again', directHosts)
} finally {
  await wan.close()
  for (const c of cleanups.reverse()) await c().catch(() => {})
}
