/**
 * A private dockerd, as in e2e-recipe.md §5: vfs storage, its own data-root, exec-root, pidfile and
 * unix socket under the scope dir, no iptables and no bridge, `--config-file` so /etc/docker's
 * daemon.json stays out of it. The proxy and the CA go in its environment (dockerd 20.10 has no
 * `proxies` key): HTTPS_PROXY, and SSL_CERT_FILE = system bundle + the CAs it should trust.
 *
 * dockerd starts its own containerd child (socket and pidfile under exec-root) and stops it on a
 * clean exit. It also bind-mounts its data-root onto itself; `stop()` unmounts it if left over.
 * Only ever start this inside the private netns: dockerd resolves registry names in DNS itself.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { startDaemon, run, runOk, waitFor, pidGone, type RunResult } from './daemon.js'
import { writeClientBundle } from './pki.js'
import { mountsUnder, type Scope } from './scope.js'

export interface DockerdOptions {
  /** `http://host:port` of the proxy dockerd should use for https registries. */
  httpsProxy?: string
  /** CA files trusted on top of the system bundle. */
  trust?: string[]
  /** daemon.json (default `{}`), e.g. `{ "registry-mirrors": [...] }`. */
  config?: Record<string, unknown>
  /** Extra environment for dockerd (e.g. NO_PROXY). */
  env?: Record<string, string>
  /** Names the dir under the scope (default `dockerd`). */
  name?: string
  /**
   * Files or directories bind-mounted for this dockerd only (`[from, onto]`, e.g. an /etc/hosts
   * naming crossdock), in a private mount namespace: unshare execs sh, which execs dockerd, so
   * the pid is still dockerd's, and the mounts vanish with it.
   */
  binds?: Array<[string, string]>
  /**
   * Default vfs (works anywhere). overlay2 for image builds: vfs copies the whole root filesystem
   * for every layer, minutes for a 350 MB base.
   */
  storageDriver?: 'vfs' | 'overlay2'
}

export interface Dockerd {
  readonly pid: number
  /** `unix:///…/docker.sock` */
  readonly host: string
  readonly dataRoot: string
  /** Runs the docker CLI against this daemon; never throws on a non-zero exit. */
  docker: (args: string[], opts?: { env?: Record<string, string>, timeoutMs?: number }) => Promise<RunResult>
  /** Like `docker`, but throws with stderr unless it exits 0; returns stdout. */
  dockerOk: (args: string[], opts?: { env?: Record<string, string>, timeoutMs?: number }) => Promise<string>
  stop: () => Promise<void>
}

export async function startDockerd (scope: Scope, opts: DockerdOptions = {}): Promise<Dockerd> {
  const base = scope.path(opts.name ?? 'dockerd')
  const p = {
    dataRoot: `${base}/data`,
    execRoot: `${base}/exec`,
    pidfile: `${base}/dockerd.pid`,
    socket: `${base}/docker.sock`,
    config: `${base}/daemon.json`,
    cliConfig: `${base}/cli`, // DOCKER_CONFIG: else `docker login` writes $HOME/.docker
    bundle: `${base}/ca-bundle.crt`,
  }
  for (const d of [p.dataRoot, p.execRoot, p.cliConfig]) mkdirSync(d, { recursive: true })
  writeFileSync(p.config, JSON.stringify(opts.config ?? {}))
  writeClientBundle(p.bundle, ...(opts.trust ?? []))

  const env: Record<string, string | undefined> = { SSL_CERT_FILE: p.bundle, ...opts.env }
  if (opts.httpsProxy !== undefined) env.HTTPS_PROXY = opts.httpsProxy
  const wrap: [string, string[]] = opts.binds === undefined || opts.binds.length === 0
    ? ['dockerd', []]
    : ['unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `${opts.binds.map(([from, onto]) => `mount --bind '${from}' '${onto}'`).join(' && ')} && exec dockerd "$@"`, 'dockerd']]
  const daemon = startDaemon('dockerd', wrap[0], [...wrap[1],
    `--config-file=${p.config}`, `--storage-driver=${opts.storageDriver ?? 'vfs'}`,
    `--data-root=${p.dataRoot}`, `--exec-root=${p.execRoot}`, `--pidfile=${p.pidfile}`,
    `--host=unix://${p.socket}`, '--iptables=false', '--ip6tables=false', '--bridge=none',
  ], { env, logFile: `${base}/dockerd.log` })

  const stop = async (): Promise<void> => {
    const pid = readPid(p.pidfile) ?? daemon.pid
    if (!pidGone(pid)) {
      try { process.kill(pid, 'SIGTERM') } catch { /* gone meanwhile */ }
    }
    try {
      await waitFor('dockerd to exit', () => daemon.hasExited() && pidGone(pid), { timeoutMs: 20_000, intervalMs: 100 })
    } finally {
      await daemon.stop(0) // SIGKILL if still there; also closes the log
    }
    // A killed dockerd leaves its containerd behind: that one is ours too (we started its parent).
    // The pidfile may be stale, so only a process whose command line names our exec-root qualifies.
    const ctd = readPid(`${p.execRoot}/containerd/containerd.pid`)
    if (ctd !== undefined && !pidGone(ctd) && cmdline(ctd).includes(p.execRoot)) {
      process.kill(ctd, 'SIGTERM')
      await waitFor('dockerd\'s containerd to exit', () => pidGone(ctd), { timeoutMs: 10_000, intervalMs: 100 }).catch(() => process.kill(ctd, 'SIGKILL'))
    }
    // Deepest first: container mounts sit below the data-root's own bind mount.
    for (const mp of [...mountsUnder(base)].sort((a, b) => b.length - a.length)) await runOk('umount', [mp])
  }
  scope.defer('stop dockerd', stop)
  scope.attachLog('dockerd', () => daemon.logTail())

  await waitFor('dockerd to answer /_ping', () => ping(p.socket), {
    timeoutMs: 30_000,
    abort: () => daemon.hasExited() ? `exited:\n${daemon.logTail()}` : undefined,
  })

  const cliEnv = (extra?: Record<string, string>): Record<string, string> => ({ DOCKER_HOST: `unix://${p.socket}`, DOCKER_CONFIG: p.cliConfig, DOCKER_BUILDKIT: '0', ...extra })
  return {
    pid: daemon.pid,
    host: `unix://${p.socket}`,
    dataRoot: p.dataRoot,
    docker: async (args, o = {}) => await run('docker', args, { env: cliEnv(o.env), timeoutMs: o.timeoutMs ?? 120_000 }),
    dockerOk: async (args, o = {}) => await runOk('docker', args, { env: cliEnv(o.env), timeoutMs: o.timeoutMs ?? 120_000 }),
    stop,
  }
}

function readPid (file: string): number | undefined {
  if (!existsSync(file)) return undefined
  const n = Number(readFileSync(file, 'utf8').trim())
  return Number.isInteger(n) && n > 0 ? n : undefined
}

function cmdline (pid: number): string {
  try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ') } catch { return '' }
}

async function ping (socketPath: string): Promise<boolean> {
  return await new Promise(resolve => {
    const req = request({ socketPath, path: '/_ping', timeout: 2000 }, res => { res.resume(); resolve(res.statusCode === 200) })
    req.once('timeout', () => req.destroy())
    req.once('error', () => resolve(false))
    req.end()
  })
}
