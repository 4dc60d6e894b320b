/**
 * The status page's data and its two routes, on both doors:
 *
 *   GET /             Accept: text/html ─► status-page.ts (one self-contained page that polls ↓)
 *                     anything else     ─► the door's plain text (curl, uptime monitors)
 *   GET /?login                         ─► 401 Basic challenge until the browser sends valid
 *                                          credentials (HTPASSWD_FILE), then the page
 *   GET /status.json                    ─► StatusReport
 *
 * Like /metrics it needs no credentials, with one exception: repository names (the most requested
 * repositories) are listed only to clients that pass client auth when HTPASSWD_FILE is set; a
 * private repository's name can say more than its content. Everything else is counts and hosts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { TrafficStats, TrafficView, UpstreamHostStats } from './traffic-stats.js'
import { STATUS_PAGE } from './status-page.js'

export interface StatusReport {
  version: string
  node: string
  startedAt: string
  uptimeSeconds: number
  doors: { proxy: string, registry: string }
  /** Upstream hosts the proxy door intercepts and the registry door serves under `/v2/<host>/…`. */
  registries: string[]
  hostedHostnames: string[]
  setup: { caUrl: string, command: string }
  cache: { usedBytes: number, maxBytes: number, entries: number, evictions: number, expirations: number, fillsFailed: number }
  fills: Array<{ digest: string, bytes: number, expectedBytes: number | null, clients: number }>
  /** How fills are elected across replicas: `redis` (REDIS_URL set) or `local`; coordinated right now or not. */
  cluster: { replica: string, mode: 'redis' | 'local', coordinated: boolean }
  traffic: { sinceStart: TrafficView, lastHour: TrafficView }
  upstreams: UpstreamHostStats[]
  /** `top` is empty and `visible` false for clients that did not pass client auth. */
  repositories: { visible: boolean, top: Array<{ name: string, requests: number }> }
}

export interface StatusSources {
  version: string
  addresses: () => { proxy: string, registry: string }
  proxyPort: () => number
  registries: readonly string[]
  hostedHostnames: readonly string[]
  cache: {
    stats: () => { entries: number, usedBytes: number, maxSize: number, evictions: number, expirations: number, fillsFailed: number }
    fillsInFlight: () => Array<{ digest: string, written: number, expectedSize?: number, readers: number }>
  }
  traffic: TrafficStats
  cluster: () => StatusReport['cluster']
  /** Client auth (HTPASSWD_FILE): whether `req` carries valid credentials. Absent: everyone may see names. */
  authorized?: (req: IncomingMessage) => Promise<boolean>
  now?: () => number
}

export type StatusRoute = (req: IncomingMessage, res: ServerResponse) => Promise<void>

const TOP_REPOSITORIES = 10

export function createStatus (src: StatusSources): { report: (req: IncomingMessage) => Promise<StatusReport>, page: (plain: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>) => StatusRoute, json: StatusRoute } {
  const now = src.now ?? Date.now
  const startedAt = now()

  const report = async (req: IncomingMessage): Promise<StatusReport> => {
    const s = src.cache.stats()
    const visible = src.authorized === undefined || await src.authorized(req)
    // The proxy door's address as this client reaches it: the host it asked for, the proxy's port.
    const hostname = (req.headers.host ?? 'localhost').replace(/:\d+$/, '')
    const proxy = `${hostname}:${src.proxyPort()}`
    return {
      version: src.version,
      node: process.version,
      startedAt: new Date(startedAt).toISOString(),
      uptimeSeconds: Math.floor((now() - startedAt) / 1000),
      doors: src.addresses(),
      registries: [...src.registries],
      hostedHostnames: [...src.hostedHostnames],
      setup: { caUrl: `http://${proxy}/ca.crt`, command: `curl -fsS http://${proxy}/setup/systemd | bash` },
      cache: { usedBytes: s.usedBytes, maxBytes: s.maxSize, entries: s.entries, evictions: s.evictions, expirations: s.expirations, fillsFailed: s.fillsFailed },
      cluster: src.cluster(),
      fills: src.cache.fillsInFlight().map(f => ({ digest: f.digest, bytes: f.written, expectedBytes: f.expectedSize ?? null, clients: f.readers })),
      traffic: { sinceStart: src.traffic.sinceStart(), lastHour: src.traffic.lastHour() },
      upstreams: src.traffic.upstreamHosts(),
      repositories: { visible, top: visible ? src.traffic.topRepositories(TOP_REPOSITORIES) : [] },
    }
  }

  return {
    report,
    page: plain => async (req, res) => {
      if (!/\btext\/html\b/.test(String(req.headers.accept ?? ''))) { await plain(req, res); return }
      const login = new URL(req.url ?? '/', 'http://x').searchParams.has('login')
      if (login && src.authorized !== undefined && !await src.authorized(req)) {
        send(req, res, 401, 'text/plain; charset=utf-8', 'crossdock: sign in with an HTPASSWD_FILE user to see repository names\n', { 'www-authenticate': 'Basic realm="crossdock"' })
        return
      }
      send(req, res, 200, 'text/html; charset=utf-8', STATUS_PAGE)
    },
    json: async (req, res) => {
      send(req, res, 200, 'application/json', `${JSON.stringify(await report(req))}\n`)
    },
  }
}

function send (req: IncomingMessage, res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  // `vary: accept`: the same URL answers HTML or plain text; `no-store`: numbers change every second.
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', vary: 'accept', ...headers })
  res.end(req.method === 'HEAD' ? undefined : body)
}
