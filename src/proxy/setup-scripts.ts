/**
 * Host setup served by the doors, generated from the address the client used to reach us (its
 * Host header), so `curl http://cache:3128/setup/systemd | sh` points the host at the same name and
 * port it just downloaded from: the authority helper, and containerd's mirror-mode hosts.toml
 * (the systemd script is systemd-setup.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'

/** A safe `host:port` for embedding in a script, or undefined if the Host header is odd. */
export function scriptAuthority (hostHeader: string | undefined, fallbackPort: number): string {
  const h = (hostHeader ?? '').trim()
  if (/^[A-Za-z0-9.-]+(:\d{1,5})?$/.test(h) || /^\[[0-9a-fA-F:.]+\](:\d{1,5})?$/.test(h)) return /:\d+$/.test(h) ? h : `${h}:${fallbackPort}`
  return `127.0.0.1:${fallbackPort}`
}

/**
 * The `/setup/containerd` route, served on both doors: the mirror is the host name the client used
 * to reach us (its Host header) with the registry port, since that is what containerd must talk to.
 */
export function containerdSetupRoute (opts: { registryPort: () => number, scheme: 'http' | 'https' }): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const port = opts.registryPort()
    const hostname = scriptAuthority(req.headers.host, port).replace(/:\d+$/, '')
    const param = new URL(req.url ?? '/', 'http://x').searchParams.get('host')
    const host = containerdHostParam(param)
    const body = param !== null && host === undefined
      ? `crossdock: ?host= must be a registry host name such as docker.io or ghcr.io\n`
      : containerdHostsToml(`${opts.scheme}://${hostname}:${port}`, host)
    const status = param !== null && host === undefined ? 400 : 200
    res.writeHead(status, { 'content-type': status === 200 ? 'application/toml; charset=utf-8' : 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) })
    res.end(req.method === 'HEAD' ? undefined : body)
  }
}

/** Registry hosts whose containerd certs.d directory name differs from the host it serves. */
const CONTAINERD_SERVERS: Record<string, string> = { 'docker.io': 'https://registry-1.docker.io' }

/**
 * containerd mirror mode (no CA, no proxy env): a `hosts.toml` sending pulls to crossdock's
 * registry port, where containerd's `?ns=<registry>` picks the upstream. `host` undefined gives the
 * `_default` file (every registry without its own directory); a host gives its per-registry file
 * with the real registry as the fallback `server`. `mirror` is `http://cache:5000` (or https://).
 * Comments say where the file goes, so `curl … > hosts.toml` is the whole installation.
 */
export function containerdHostsToml (mirror: string, host?: string): string {
  const dir = host ?? '_default'
  const server = host === undefined ? undefined : (CONTAINERD_SERVERS[host] ?? `https://${host}`)
  const lines = [
    `# crossdock: containerd mirror mode. Pulls of ${host ?? 'every registry without its own directory'} go to ${mirror},`,
    '# no CA and no proxy needed (containerd adds ?ns=<registry> and crossdock caches that registry).',
    `# Install as /etc/containerd/certs.d/${dir}/hosts.toml:`,
    `#   mkdir -p /etc/containerd/certs.d/${dir} && curl -fsS '<this URL>' > /etc/containerd/certs.d/${dir}/hosts.toml`,
    '# containerd reads it on the next pull when its config names the directory (restart once after adding it):',
    '#   [plugins."io.containerd.grpc.v1.cri".registry]',
    '#     config_path = "/etc/containerd/certs.d"',
    '# ctr: `ctr images pull --hosts-dir /etc/containerd/certs.d docker.io/library/alpine:3.20`.',
    ...(host === undefined ? ['# Per-registry variant (with the registry itself as fallback): /setup/containerd?host=docker.io'] : []),
    '',
    ...(server !== undefined ? [`server = "${server}"`, ''] : []),
    `[host."${mirror}"]`,
    '  capabilities = ["pull", "resolve"]',
    '',
  ]
  return lines.join('\n')
}

/** A `?host=` value fit for a certs.d directory name and a TOML string, or undefined. */
export function containerdHostParam (value: string | null): string | undefined {
  if (value === null) return undefined
  const v = value.trim().toLowerCase()
  return /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/.test(v) && v.length <= 253 ? v : undefined
}
