/**
 * The operations endpoints both doors serve: `/metrics` (Prometheus text), `/healthz` and `/readyz`
 * (JSON). The proxy door mounts them as director routes; the registry door claims them before the
 * hosted registry sees the request (they are outside `/v2/`, so no registry path is shadowed).
 * No client authentication: probes and scrapers carry no credentials, and nothing here names a
 * repository or a user.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Health } from './health.js'
import type { Metrics } from './metrics.js'

export type OpsRoute = (req: IncomingMessage, res: ServerResponse) => Promise<void>

export function createOpsRoutes (opts: { metrics: Metrics, health: Health }): Record<'/metrics' | '/healthz' | '/readyz', OpsRoute> {
  return {
    '/metrics': async (req, res) => {
      const { contentType, body } = await opts.metrics.render()
      send(req, res, 200, contentType, body)
    },
    '/healthz': async (req, res) => {
      send(req, res, 200, 'application/json', '{"status":"ok"}\n')
    },
    '/readyz': async (req, res) => {
      const r = await opts.health.readiness()
      const body = r.ready
        ? { status: 'ready', checks: r.checks, freeBytes: r.freeBytes, coordination: r.coordination }
        : { status: 'not ready', reason: r.reason, checks: r.checks, freeBytes: r.freeBytes, coordination: r.coordination }
      send(req, res, r.ready ? 200 : 503, 'application/json', `${JSON.stringify(body)}\n`)
    },
  }
}

function send (req: IncomingMessage, res: ServerResponse, status: number, type: string, body: string): void {
  // Probes poll; a cached answer would hide a state change.
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' })
  res.end(req.method === 'HEAD' ? undefined : body)
}
