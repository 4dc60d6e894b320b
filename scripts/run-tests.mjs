#!/usr/bin/env node
// `npm test`: the whole suite — unit, integration and end-to-end — on a fresh machine.
//  1. installs the Debian packages the end-to-end tests drive (real dockerd, containerd, skopeo,
//     distribution, busybox, prometheus, debootstrap, chromium for the status page, Ceph RGW and
//     redis-server for the S3 backend, nginx in front of the cluster tests' replicas) when they
//     are missing and we are root, and
//     makes the stand-in base image the image test builds on (scripts/make-image-base.sh; again when
//     package-lock.json changes);
//  2. builds dist/ (end-to-end tests run the built `crossdock` binary) and typechecks tests and benches;
//  3. runs tap inside a private network namespace with only loopback, so no test can send a packet
//     (or a DNS query: dockerd resolves registry names even behind a proxy) off this machine;
//  4. prints a closing `N passed, N failed` line computed from tap's results.
// Arguments are passed to tap (e.g. `npm test -- test/unit`).
import { spawnSync, spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createHash } from 'node:crypto'

const DEBIAN_PACKAGES = { dockerd: 'docker.io', containerd: 'containerd', ctr: 'containerd', skopeo: 'skopeo', 'docker-registry': 'docker-registry', busybox: 'busybox-static', htpasswd: 'apache2-utils', prometheus: 'prometheus', debootstrap: 'debootstrap', chromium: 'chromium', 'ceph-mon': 'ceph-mon', 'ceph-osd': 'ceph-osd', radosgw: 'radosgw', 'redis-server': 'redis-server', nginx: 'nginx' }
// The stand-in BASE_IMAGE test/e2e/image.test.ts builds the Dockerfile on (kept between runs).
const IMAGE_BASE = process.env.CROSSDOCK_IMAGE_BASE ?? '/tmp/crossdock-image-base/base.tar'
const args = process.argv.slice(2)

function have (cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

function run (cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { stdio: 'inherit', ...opts })
  if (r.status !== 0) {
    console.error(`run-tests: ${cmd} ${argv.join(' ')} failed (exit ${r.status})`)
    process.exit(r.status ?? 1)
  }
}

const missing = [...new Set(Object.entries(DEBIAN_PACKAGES).filter(([cmd]) => !have(cmd)).map(([, pkg]) => pkg))]
if (missing.length > 0) {
  if (process.getuid?.() !== 0) {
    console.error(`run-tests: end-to-end tests need ${missing.join(' ')}; run as root so they can be installed`)
    process.exit(1)
  }
  console.log(`run-tests: installing ${missing.join(' ')} from Debian`)
  run('apt-get', ['update', '-qq'])
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
}

// Needs the Debian mirror, so before the network namespace; a failure only makes image.test.ts skip.
// Its npm cache must hold this package-lock's packages (the image's `npm ci` is offline): made again
// when the lockfile changed since.
const lockSha = createHash('sha256').update(readFileSync('package-lock.json')).digest('hex')
const baseLockSha = existsSync(`${IMAGE_BASE}.lock-sha256`) ? readFileSync(`${IMAGE_BASE}.lock-sha256`, 'utf8').trim() : ''
if ((!existsSync(IMAGE_BASE) || baseLockSha !== lockSha) && process.getuid?.() === 0 && have('debootstrap')) {
  console.log(`run-tests: making the stand-in base image ${IMAGE_BASE} (for this package-lock.json)`)
  const r = spawnSync('bash', ['scripts/make-image-base.sh', IMAGE_BASE], { stdio: 'inherit' })
  if (r.status !== 0) console.error(`run-tests: scripts/make-image-base.sh failed (exit ${r.status}); test/e2e/image.test.ts will skip`)
}

run('npx', ['tsc', '-p', 'tsconfig.json'])
// Tests and benchmarks are typechecked too (tap runs them without checking types).
run('npx', ['tsc', '-p', 'tsconfig.test.json'])

const tap = existsSync('node_modules/.bin/tap') ? 'node_modules/.bin/tap' : 'tap'
const inner = `ip link set lo up && exec ${tap} --reporter=tap ${args.map(a => `'${a.replace(/'/g, "'\\''")}'`).join(' ')}`
const child = spawn('unshare', ['--net', 'sh', '-c', inner], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, CROSSDOCK_NETNS: '1', CROSSDOCK_IMAGE_BASE: IMAGE_BASE } })

// Top-level results: tap's own TAP stream has one `ok N - file` / `not ok N - file` line per test file
// at column 0; their subtests are indented.
let passed = 0
let failed = 0
let tail = ''
child.stdout.on('data', chunk => {
  process.stdout.write(chunk)
  const text = tail + chunk.toString('utf8')
  const lines = text.split('\n')
  tail = lines.pop() ?? ''
  for (const line of lines) {
    if (/^ok \d+/.test(line)) passed++
    else if (/^not ok \d+/.test(line)) failed++
  }
})
child.on('close', code => {
  if (/^ok \d+/.test(tail)) passed++
  else if (/^not ok \d+/.test(tail)) failed++
  console.log(`${passed} passed, ${failed} failed`)
  process.exit(code === 0 && failed === 0 ? 0 : (code || 1))
})
