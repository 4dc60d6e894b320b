/**
 * The contenders, each started on loopback inside the bench's network namespace with its own
 * state directory, and each reached the way its users reach it:
 *
 *   direct        the upstream itself (HTTPS :443): the physical limit
 *   crossdock     `node dist/cli.js serve`: registry door /v2/docker.io/… (plain HTTP :5000) when
 *                 it routes there, else the MITM door (CONNECT :3128 + TLS with a minted leaf)
 *   nginx         Debian's nginx as a plain HTTP reverse proxy (:8080) with rpardini's caching-layer
 *                 directives, HTTPS to the upstream with SNI and the fixture CA
 *   distribution  Debian's docker-registry (CNCF distribution 2.8) with proxy.remoteurl
 *                 https://registry-1.docker.io (resolved to 127.0.0.1 by the namespace's /etc/hosts)
 *
 * Every one has the same shape, so scenarios loop over them; `pids()` is what CPU and RSS are read
 * from (nginx: master + workers).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, openSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { HUB, type Upstream } from './upstream.js'
import { processTree } from './procstat.js'
import type { Endpoint } from './client.js'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const TEST_CA_FILE = join(ROOT, 'test/fixtures/test-ca.crt')
const SYSTEM_BUNDLE = '/etc/ssl/certs/ca-certificates.crt'

export interface Contender {
  name: 'direct' | 'crossdock' | 'nginx' | 'distribution'
  /** How clients reach it, for the report. */
  door: string
  endpoint: Endpoint
  pids: () => number[]
  stop: () => Promise<void>
  /** Stops it and starts a fresh process on the same state (cache kept), so a peak is its own. */
  restart?: () => Promise<void>
}

function daemon (cmd: string, args: string[], logFile: string, env: NodeJS.ProcessEnv = process.env): { child: ChildProcess, stop: () => Promise<void> } {
  const fd = openSync(logFile, 'a')
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], env })
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  return {
    child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
      await exited
      clearTimeout(timer)
    },
  }
}

/** Polls `GET http://127.0.0.1:port/path` until `ok(status)`, or throws after `timeoutMs`. */
async function waitHttp (what: string, port: number, path: string, child: ChildProcess, logFile: string, ok = (s: number) => s === 200, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited ${child.exitCode}:\n${readFileSync(logFile, 'utf8').slice(-2000)}`)
    const status = await headStatus(port, path, 'GET').catch(() => 0)
    if (ok(status)) return status
    if (Date.now() > deadline) throw new Error(`${what}: no answer on :${port}${path} (last ${status})`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

export async function headStatus (port: number, path: string, method = 'HEAD', headers: Record<string, string> = {}): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent: false, headers, timeout: 10_000 }, res => { res.resume(); res.once('end', () => resolve(res.statusCode ?? 0)) })
    req.once('timeout', () => req.destroy(new Error('timeout')))
    req.once('error', reject)
    req.end()
  })
}

export function direct (up: Upstream): Contender {
  return {
    name: 'direct',
    door: 'the upstream itself, HTTPS',
    endpoint: { mode: 'https', host: '127.0.0.1', port: 443, servername: HUB, ca: readFileSync(TEST_CA_FILE, 'utf8'), prefix: '' },
    pids: () => [up.pid],
    stop: async () => {},
  }
}

export interface CrossdockOptions {
  dir: string
  /** Extra REGISTRIES (the mint scenario's new hosts). */
  registries?: string[]
  /** Write a V8 CPU profile to this directory (node --cpu-prof). */
  cpuProfDir?: string
  /** Force the MITM door even when the registry door routes /v2/docker.io/… */
  mitm?: boolean
}

export async function startCrossdock (o: CrossdockOptions): Promise<Contender & { caFile: string, proxyPort: number, registryPort: number }> {
  for (const d of ['ca', 'cache', 'registry']) mkdirSync(join(o.dir, d), { recursive: true })
  const log = join(o.dir, 'crossdock.log')
  const node = o.cpuProfDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`] : []
  const launch = async (): Promise<ReturnType<typeof daemon>> => {
    const d = daemon(process.execPath, [...node, join(ROOT, 'dist/cli.js'), 'serve'], log, {
    ...process.env,
    NODE_OPTIONS: '',
    PROXY_PORT: '3128',
    REGISTRY_PORT: '5000',
    LISTEN_HOST: '127.0.0.1',
    CA_DIR: join(o.dir, 'ca'),
    CACHE_DIR: join(o.dir, 'cache'),
    REGISTRY_STORAGE_DIR: join(o.dir, 'registry'),
    UPSTREAM_CA_FILE: TEST_CA_FILE,
    UPSTREAM_CONNECT_TO: `${HUB}:443:127.0.0.1:443`,
      REGISTRIES: ['registry.k8s.io', 'gcr.io', 'quay.io', 'ghcr.io', ...(o.registries ?? [])].join(' '),
    })
    await waitHttp('crossdock', 3128, '/', d.child, log)
    await waitHttp('crossdock registry door', 5000, '/v2/', d.child, log)
    return d
  }
  let d = await launch()
  const caFile = join(o.dir, 'ca/ca.crt')
  const viaDoor = o.mitm !== true && await headStatus(5000, '/v2/docker.io/library/bench/manifests/latest', 'HEAD', { accept: 'application/vnd.docker.distribution.manifest.v2+json' }).catch(() => 0) === 200
  const endpoint: Endpoint = viaDoor
    ? { mode: 'http', host: '127.0.0.1', port: 5000, prefix: 'docker.io/' }
    : { mode: 'connect', host: '127.0.0.1', port: 3128, servername: HUB, ca: readFileSync(caFile, 'utf8'), prefix: '' }
  return {
    name: 'crossdock',
    door: viaDoor ? 'registry door, plain HTTP, /v2/docker.io/…' : 'MITM door: CONNECT + TLS (minted leaf) — its registry door had no /v2/docker.io/… route yet',
    endpoint,
    pids: () => [d.child.pid!],
    stop: async () => { await d.stop() },
    restart: async () => { await d.stop(); d = await launch() },
    caFile,
    proxyPort: 3128,
    registryPort: 5000,
  }
}

/** nginx.conf: rpardini's caching-layer directives (reference-rpardini.md §1.3), lock_age at its default. */
function nginxConf (dir: string): string {
  const upstream = `
      proxy_pass https://127.0.0.1:443;
      proxy_set_header Host ${HUB};`
  return `user root;
worker_processes auto;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/tmp/body; proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi; uwsgi_temp_path ${dir}/tmp/uwsgi; scgi_temp_path ${dir}/tmp/scgi;
  sendfile on; tcp_nopush on; tcp_nodelay on; keepalive_timeout 300s;
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=cache:10m max_size=32g inactive=60d use_temp_path=off;
  server {
    listen 127.0.0.1:8080;
    proxy_read_timeout 900;
    proxy_cache cache;
    proxy_cache_key $uri;
    proxy_cache_lock on;
    proxy_cache_lock_timeout 880s;
    proxy_cache_valid 200 206 60d;
    proxy_ignore_client_abort on;
    proxy_force_ranges on;
    proxy_cache_revalidate on;
    proxy_hide_header Set-Cookie;
    proxy_ignore_headers X-Accel-Expires Expires Cache-Control Set-Cookie;
    proxy_buffer_size 128k; proxy_buffers 4 256k;
    chunked_transfer_encoding on;
    gzip off;
    proxy_ssl_server_name on;
    proxy_ssl_name ${HUB};
    proxy_ssl_verify on;
    proxy_ssl_trusted_certificate ${TEST_CA_FILE};
    proxy_ssl_verify_depth 3;
    location ~ ^/v2/(.*)/blobs/sha256:(.*) {${upstream}
    }
    location ~ ^/v2/(.*)/manifests/sha256:(.*) {${upstream}
    }
    # rpardini's default (ENABLE_MANIFEST_CACHE=false): "manifest-default-disabled".
    location ~ ^/v2/(.*)/manifests/ {
      proxy_cache_valid 0s;
      proxy_cache_use_stale error timeout http_500 http_502 http_504 http_429;${upstream}
    }
    location / {
      proxy_cache off;${upstream}
    }
  }
}
`
}

export async function startNginx (dir: string): Promise<Contender> {
  for (const d of ['tmp', 'cache']) mkdirSync(join(dir, d), { recursive: true })
  writeFileSync(join(dir, 'nginx.conf'), nginxConf(dir))
  const log = join(dir, 'nginx.out')
  const launch = async (): Promise<ReturnType<typeof daemon>> => {
    const d = daemon('nginx', ['-e', join(dir, 'error.log'), '-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], log)
    await waitHttp('nginx', 8080, '/v2/', d.child, log)
    return d
  }
  let d = await launch()
  return {
    name: 'nginx',
    door: 'plain HTTP reverse proxy (proxy_cache), HTTPS to the upstream',
    endpoint: { mode: 'http', host: '127.0.0.1', port: 8080, prefix: '' },
    pids: () => processTree(d.child.pid!),
    stop: async () => { await d.stop() },
    restart: async () => { await d.stop(); d = await launch() },
  }
}

/** Debian's docker-registry: a pull-through cache of Docker Hub (`proxy`), or a hosted registry. */
export async function startDistribution (dir: string, o: { port: number, proxy: boolean }): Promise<Contender> {
  mkdirSync(join(dir, 'data'), { recursive: true })
  const bundle = join(dir, 'ca-bundle.crt')
  writeFileSync(bundle, (existsSync(SYSTEM_BUNDLE) ? readFileSync(SYSTEM_BUNDLE, 'utf8') : '') + readFileSync(TEST_CA_FILE, 'utf8'))
  const config = {
    version: '0.1',
    log: { level: 'info', formatter: 'text', accesslog: { disabled: false } },
    storage: { filesystem: { rootdirectory: join(dir, 'data') }, delete: { enabled: true }, cache: { blobdescriptor: 'inmemory' } },
    http: { addr: `127.0.0.1:${o.port}`, secret: 'crossdock-bench' },
    health: { storagedriver: { enabled: false } },
    ...(o.proxy ? { proxy: { remoteurl: `https://${HUB}` } } : {}),
  }
  // distribution reads YAML, and JSON is YAML.
  writeFileSync(join(dir, 'config.yml'), JSON.stringify(config, null, 2))
  const log = join(dir, 'registry.log')
  const launch = async (): Promise<ReturnType<typeof daemon>> => {
    const d = daemon('docker-registry', ['serve', join(dir, 'config.yml')], log, { ...process.env, SSL_CERT_FILE: bundle })
    await waitHttp('docker-registry', o.port, '/v2/', d.child, log)
    return d
  }
  let d = await launch()
  return {
    name: 'distribution',
    door: o.proxy ? 'plain HTTP, proxy.remoteurl https://registry-1.docker.io' : 'plain HTTP, hosted (filesystem storage)',
    endpoint: { mode: 'http', host: '127.0.0.1', port: o.port, prefix: '' },
    pids: () => [d.child.pid!],
    stop: async () => { await d.stop() },
    restart: async () => { await d.stop(); d = await launch() },
  }
}
