/**
 * A real load balancer for cluster tests and benchmarks: Debian's nginx, round robin over the
 * replicas' registry doors, configured the way a registry needs a reverse proxy to be:
 *
 *   client ──HTTP──► nginx <address>:<port> ──HTTP/1.1, keep-alive──► replica 1 | 2 | 3 (round robin)
 *
 * - `proxy_buffering off` and `proxy_request_buffering off` with `proxy_http_version 1.1`: blobs
 *   stream both ways (a 10 GB layer is never spooled to nginx's disk; nginx still buffers a chunked
 *   request body whatever `proxy_request_buffering` says unless it speaks HTTP/1.1 upstream).
 *   `client_max_body_size 0`: no limit on a PATCH.
 * - Retries: `proxy_next_upstream error timeout` — only when connecting to a replica failed (a
 *   replica that is down), never after a response began. nginx never passes a POST or PATCH on
 *   once it sent it (`non_idempotent` is not set), nor any request whose unbuffered body it began
 *   to send, so a half-sent upload is never replayed against another replica: the client sees the
 *   error and retries itself, as docker does.
 * - One worker and a shared `zone`, so round robin is one sequence: N requests in a row land on
 *   N different replicas (what the "parts on different replicas" test relies on).
 * - Its access log is JSON, one line per request with `$upstream_addr`: which replica answered.
 *
 * Everything (config, pid, temp dirs, logs) lives in `dir`; `stop` ends the master PID started
 * here (its worker goes with it); `start` again reuses the same port.
 */
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { startDaemon, waitFor, freePort, type Daemon } from './e2e/daemon.js'

export interface NginxLbOptions {
  /** Loopback address to listen on. */
  address: string
  /** Default: a free port on `address`, kept across restarts. */
  port?: number
  /** `host:port` of each replica's registry door. */
  backends: string[]
}

export interface LbRequest {
  method: string
  /** Path with query string. */
  uri: string
  status: number
  /** `host:port` of the replica that answered ('' when none was reached). */
  upstream: string
  requestLength: number
  bytesSent: number
}

export interface NginxLb {
  /** `host:port`, what docker refs use. */
  readonly address: string
  readonly url: string
  readonly pid: () => number | undefined
  /** Every request nginx logged so far, oldest first (read from its access log on each call). */
  requests: () => LbRequest[]
  start: () => Promise<void>
  stop: () => Promise<void>
}

export async function startNginxLb (dir: string, opts: NginxLbOptions): Promise<NginxLb> {
  for (const d of ['tmp', 'logs']) mkdirSync(join(dir, d), { recursive: true })
  const port = opts.port ?? await freePort(opts.address)
  const conf = join(dir, 'nginx.conf')
  const accessLog = join(dir, 'logs', 'access.json')
  writeFileSync(conf, nginxConf(dir, `${opts.address}:${port}`, opts.backends, accessLog))
  let daemon: Daemon | undefined
  const start = async (): Promise<void> => {
    if (daemon !== undefined && !daemon.hasExited()) throw new Error('nginx: already running')
    const d = startDaemon('nginx', 'nginx', ['-p', dir, '-c', conf, '-e', join(dir, 'logs', 'error.log'), '-g', 'daemon off;'], { logFile: join(dir, 'nginx.out') })
    daemon = d
    await waitFor(`nginx on ${opts.address}:${port}`, async () => (await fetch(`http://${opts.address}:${port}/nginx-lb-ready`)).status === 204, {
      timeoutMs: 15_000,
      intervalMs: 50,
      abort: () => d.hasExited() ? `exited: ${d.logTail(1000)} ${readTail(join(dir, 'logs', 'error.log'))}` : undefined,
    })
  }
  await start()
  return {
    address: `${opts.address}:${port}`,
    url: `http://${opts.address}:${port}`,
    pid: () => daemon?.pid,
    requests: () => existsSync(accessLog)
      ? readFileSync(accessLog, 'utf8').split('\n').filter(l => l.trim() !== '').map(l => JSON.parse(l) as LbRequest).filter(r => r.uri !== '/nginx-lb-ready')
      : [],
    start,
    // SIGTERM: nginx's fast shutdown (the master stops its worker and exits).
    stop: async () => { await daemon?.stop(10_000) },
  }
}

function readTail (file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8').slice(-1000) : ''
}

function nginxConf (dir: string, listen: string, backends: string[], accessLog: string): string {
  return `user root;
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
events { worker_connections 4096; }
http {
  client_body_temp_path ${join(dir, 'tmp/body')}; proxy_temp_path ${join(dir, 'tmp/proxy')};
  fastcgi_temp_path ${join(dir, 'tmp/fastcgi')}; uwsgi_temp_path ${join(dir, 'tmp/uwsgi')}; scgi_temp_path ${join(dir, 'tmp/scgi')};
  log_format lb escape=json '{"method":"$request_method","uri":"$request_uri","status":$status,"upstream":"$upstream_addr","requestLength":$request_length,"bytesSent":$bytes_sent}';
  access_log ${accessLog} lb;
  upstream crossdock {
    zone crossdock 64k;
${backends.map(b => `    server ${b};`).join('\n')}
    keepalive 32;
  }
  server {
    listen ${listen};
    client_max_body_size 0;
    location = /nginx-lb-ready { access_log off; return 204; }
    location / {
      proxy_pass http://crossdock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_next_upstream error timeout;
      proxy_connect_timeout 5s;
      proxy_read_timeout 900s;
      proxy_send_timeout 900s;
    }
  }
}
`
}
