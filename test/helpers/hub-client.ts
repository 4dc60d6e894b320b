/**
 * What `docker pull` does for one manifest against a token-authenticated registry, through crossdock
 * (either door): the request, its 401 challenge, the token from the realm the challenge names, the
 * request again with the token. Through the proxy door the client runs this dance itself (and
 * crossdock may add credentials to its token request); on the registry door crossdock does it.
 */
import { proxiedRequest } from './proxy-client.js'

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json'

export interface DanceResult {
  /** Status of the last request made (the manifest, or the token request that failed). */
  status: number
  body: string
  /** Status of the token request, when one was made. */
  tokenStatus?: number
}

/** GET /v2/<repository>/manifests/<tag> on `host` through the MITM door, with the client's token dance. */
export async function mitmManifest (o: { proxyPort: number, ca: string, host: string, repository: string, tag: string }): Promise<DanceResult> {
  const get = async (authorization?: string): Promise<{ status: number, headers: Record<string, unknown>, body: string }> => {
    const r = await proxiedRequest({ proxyPort: o.proxyPort, host: o.host, ca: o.ca, path: `/v2/${o.repository}/manifests/${o.tag}`, headers: { accept: ACCEPT, ...(authorization !== undefined ? { authorization } : {}) } })
    return { status: r.status, headers: r.headers, body: r.body.toString() }
  }
  const first = await get()
  if (first.status !== 401) return first
  const challenge = String(first.headers['www-authenticate'] ?? '')
  const param = (k: string): string | undefined => new RegExp(`${k}="([^"]*)"`).exec(challenge)?.[1]
  const realm = new URL(param('realm') ?? '')
  const query = new URLSearchParams()
  for (const k of ['service', 'scope']) { const v = param(k); if (v !== undefined) query.set(k, v) }
  const tok = await proxiedRequest({ proxyPort: o.proxyPort, host: realm.hostname, ca: o.ca, path: `${realm.pathname}?${query.toString()}` })
  if (tok.status !== 200) return { status: tok.status, body: tok.body.toString(), tokenStatus: tok.status }
  const json = JSON.parse(tok.body.toString()) as { token?: string, access_token?: string }
  const second = await get(`Bearer ${json.token ?? json.access_token ?? ''}`)
  return { status: second.status, body: second.body, tokenStatus: 200 }
}
