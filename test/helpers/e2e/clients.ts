/**
 * The other real clients, as in e2e-recipe.md §7.2–7.3: skopeo, and containerd driven by `ctr`.
 *
 * Both fetch in the client process, so the proxy and the CA go in the *client's* environment
 * (HTTPS_PROXY, SSL_CERT_FILE = system bundle + trusted CAs), not containerd's. `ctr` cannot pull
 * Docker Hub short names ("object required"): use `docker.io/library/x:t`.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { startDaemon, run, runOk, waitFor, type RunResult } from './daemon.js'
import { writeClientBundle } from './pki.js'
import type { Scope } from './scope.js'

export interface ClientNetOptions {
  /** HTTPS_PROXY for the client (crossdock's proxyUrl). */
  httpsProxy?: string
  /** CA files trusted on top of the system bundle (written to a bundle under the scope). */
  trust?: string[]
  env?: Record<string, string>
  timeoutMs?: number
}

let bundles = 0

function clientEnv (scope: Scope, o: ClientNetOptions): Record<string, string> {
  const env: Record<string, string> = { ...o.env }
  if (o.httpsProxy !== undefined) env.HTTPS_PROXY = o.httpsProxy
  if (o.trust !== undefined && o.trust.length > 0) env.SSL_CERT_FILE = writeClientBundle(scope.path('client-bundles', `${++bundles}.crt`), ...o.trust)
  return env
}

/** Runs skopeo (never throws on a non-zero exit). */
export async function skopeo (scope: Scope, args: string[], o: ClientNetOptions = {}): Promise<RunResult> {
  return await run('skopeo', args, { env: clientEnv(scope, o), timeoutMs: o.timeoutMs ?? 60_000 })
}

export interface Containerd {
  readonly pid: number
  readonly socket: string
  /** `ctr --address <socket> …` (never throws on a non-zero exit). */
  ctr: (args: string[], o?: ClientNetOptions) => Promise<RunResult>
  ctrOk: (args: string[], o?: ClientNetOptions) => Promise<string>
  /** A `--hosts-dir` tree: `{ 'docker.io': toml, '_default': toml }` → `<dir>/<host>/hosts.toml`. */
  writeHostsDir: (hosts: Record<string, string>) => string
  stop: () => Promise<void>
}

/** A private containerd (own root, state, sockets and opt dir; CRI and exotic snapshotters off). */
export async function startContainerd (scope: Scope, name = 'containerd'): Promise<Containerd> {
  const base = scope.path(name)
  mkdirSync(base, { recursive: true })
  const socket = `${base}/ctd.sock`
  const config = `${base}/config.toml`
  writeFileSync(config, [
    'version = 2',
    `root = "${base}/root"`,
    `state = "${base}/state"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]',
    '[grpc]',
    `  address = "${socket}"`,
    '[ttrpc]',
    `  address = "${socket}.ttrpc"`,
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = "${base}/opt"`, // else it creates /opt/containerd
    '',
  ].join('\n'))
  const daemon = startDaemon(name, 'containerd', ['--config', config], { logFile: `${base}/containerd.log` })
  scope.defer(`stop ${name}`, async () => { await daemon.stop() })
  scope.attachLog(name, () => daemon.logTail())
  const ctrArgs = (args: string[]): string[] => ['--address', socket, ...args]
  await waitFor(`${name} to answer ctr version`, async () => (await run('ctr', ctrArgs(['version']), { timeoutMs: 5000 })).code === 0, {
    timeoutMs: 20_000,
    intervalMs: 100,
    abort: () => daemon.hasExited() ? `exited:\n${daemon.logTail()}` : undefined,
  })
  return {
    pid: daemon.pid,
    socket,
    ctr: async (args, o = {}) => await run('ctr', ctrArgs(args), { env: clientEnv(scope, o), timeoutMs: o.timeoutMs ?? 60_000 }),
    ctrOk: async (args, o = {}) => await runOk('ctr', ctrArgs(args), { env: clientEnv(scope, o), timeoutMs: o.timeoutMs ?? 60_000 }),
    writeHostsDir: hosts => {
      const dir = `${base}/certs.d`
      for (const [host, toml] of Object.entries(hosts)) {
        mkdirSync(`${dir}/${host}`, { recursive: true })
        writeFileSync(`${dir}/${host}/hosts.toml`, toml)
      }
      return dir
    },
    stop: async () => { await daemon.stop() },
  }
}
