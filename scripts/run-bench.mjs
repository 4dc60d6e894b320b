#!/usr/bin/env node
// `npm run bench`: runs every benchmark in bench/ (each prints its figures; none asserts).
// Pass file names to run some: `npm run bench -- bench/peers.ts`.
//
// As root, the benchmarks run inside a private network and mount namespace with only loopback up
// and an /etc/hosts (bind-mounted, private to the namespace) that sends registry-1.docker.io and
// auth.docker.io to 127.0.0.1: bench/peers.ts serves a fake Docker Hub on 127.0.0.1:443 there, so
// distribution's `proxy.remoteurl` and dockerd can use the real name and nothing leaves the machine.
// Before entering it, the Debian packages the peer benchmark compares against are installed when
// missing (nginx, docker-registry, dockerd, rsvg-convert for the chart; skopeo, Ceph RGW and
// redis-server for bench/cluster.ts).
import { readdirSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const DEBIAN_PACKAGES = { nginx: 'nginx', 'docker-registry': 'docker-registry', dockerd: 'docker.io', 'rsvg-convert': 'librsvg2-bin', skopeo: 'skopeo', 'ceph-mon': 'ceph-mon', 'ceph-osd': 'ceph-osd', radosgw: 'radosgw', 'redis-server': 'redis-server' }
const args = process.argv.slice(2)
const have = cmd => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
const isRoot = process.getuid?.() === 0

if (process.env.CROSSDOCK_NETNS !== '1' && isRoot && have('unshare')) {
  const missing = [...new Set(Object.entries(DEBIAN_PACKAGES).filter(([cmd]) => !have(cmd)).map(([, pkg]) => pkg))]
  if (missing.length > 0) {
    console.log(`run-bench: installing ${missing.join(' ')} from Debian`)
    const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env: aptEnv })
    spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env: aptEnv })
  }
  const dir = mkdtempSync(join(tmpdir(), 'cd-bench-ns-'))
  const hosts = join(dir, 'hosts')
  writeFileSync(hosts, `${readFileSync('/etc/hosts', 'utf8').trimEnd()}\n127.0.0.1 registry-1.docker.io auth.docker.io\n`)
  const quoted = [process.execPath, 'scripts/run-bench.mjs', ...args].map(a => `'${a.replace(/'/g, "'\\''")}'`).join(' ')
  const inner = `ip link set lo up && mount --bind '${hosts}' /etc/hosts && exec ${quoted}`
  const r = spawnSync('unshare', ['--net', '--mount', 'sh', '-c', inner], { stdio: 'inherit', env: { ...process.env, CROSSDOCK_NETNS: '1' } })
  rmSync(dir, { recursive: true, force: true })
  process.exit(r.status ?? 1)
}

if (process.env.CROSSDOCK_NETNS !== '1') console.log('run-bench: not root (or no unshare): running outside a private network namespace; bench/peers.ts will skip')
const files = args.length > 0 ? args : readdirSync('bench').filter(f => f.endsWith('.ts') && f !== 'lib.ts').map(f => `bench/${f}`)
const tsx = 'node_modules/.bin/tsx'
let failed = 0
for (const f of files) {
  console.log(`\n# ${f}`)
  const r = spawnSync(tsx, [f], { stdio: 'inherit' })
  if (r.status !== 0) failed++
}
process.exit(failed === 0 ? 0 : 1)
