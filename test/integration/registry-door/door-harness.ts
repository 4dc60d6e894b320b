/**
 * The whole app (startApp, port 0) in front of a counting FakeUpstream that stands in for Docker Hub,
 * ghcr.io and quay.io, plus two clients: plain HTTP to the registry port (no CA, no proxy) and a
 * CONNECT + TLS client through the proxy door, so one test can pull through both doors.
 */
import type { Test } from 'tap'
import { Agent, request } from 'undici'
import { FakeUpstream } from '../../helpers/fake-upstream.js'
import { startApp, type StartedApp } from '../../helpers/start-app.js'
import { proxiedRequest } from '../../helpers/proxy-client.js'

export const HUB = 'registry-1.docker.io'
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const ACCEPT = `application/vnd.oci.image.index.v1+json, ${OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json`

export interface Reply {
  status: number
  headers: Record<string, string>
  body: Buffer
  json: () => any
}

export interface DoorHarness {
  up: FakeUpstream
  app: StartedApp
  /** A request to the registry port. */
  reg: (method: string, path: string, opts?: { headers?: Record<string, string>, body?: Buffer | string }) => Promise<Reply>
  /** A request through the proxy door's MITM for upstream `host`. */
  mitm: (host: string, method: string, path: string, headers?: Record<string, string>) => Promise<Reply>
}

export async function startDoor (t: Test, env: Record<string, string> = {}): Promise<DoorHarness> {
  const up = new FakeUpstream()
  await up.start()
  t.teardown(async () => { await up.stop() })
  const app = await startApp({ UPSTREAM_CONNECT_TO: up.connectTo([HUB, 'ghcr.io', 'quay.io']), CACHE_MIN_FREE: '0', ...env })
  t.teardown(async () => { await app.stop() })
  const dispatcher = new Agent({ keepAliveTimeout: 1000 })
  t.teardown(async () => { await dispatcher.close() })
  return {
    up,
    app,
    reg: async (method, path, o = {}) => {
      const r = await request(`http://127.0.0.1:${app.registryPort}${path}`, { method: method as any, headers: o.headers, body: o.body, dispatcher })
      const body = Buffer.from(await r.body.arrayBuffer())
      return reply(r.statusCode, r.headers, body)
    },
    mitm: async (host, method, path, headers = {}) => {
      const r = await proxiedRequest({ proxyPort: app.proxyPort, host, ca: app.caPem, method, path, headers })
      return reply(r.status, r.headers, r.body)
    },
  }
}

function reply (status: number, raw: Record<string, string | string[] | undefined>, body: Buffer): Reply {
  const headers: Record<string, string> = {}
  for (const [k, v] of Object.entries(raw)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v
  return { status, headers, body, json: () => JSON.parse(body.toString('utf8')) }
}

/** Blob GETs that reached the upstream (any repository). */
export function upstreamBlobGets (up: FakeUpstream): number {
  return up.count('GET', '/blobs/')
}
