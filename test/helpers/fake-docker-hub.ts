/**
 * A fake Docker Hub for upstream-auth tests, over TLS with the TEST-ONLY fixture certificate; point
 * names at it with UPSTREAM_CONNECT_TO (`hub.connectTo([...])`). One server plays every host, told
 * apart by the Host header:
 *
 *   auth.docker.io   GET /token?service=registry.docker.io&scope=repository:<name>:pull
 *                      anonymous → a token for public repositories only; Basic user:pass → a token
 *                      that also reads private ones (only those under the user's `userPrefixes`,
 *                      when it has some: one account per organisation); bad Basic → 401. JSON
 *                      `{token, access_token, expires_in, issued_at}` (`tokenField` picks which).
 *                    POST /token grant_type=refresh_token&refresh_token=… (OAuth2, identity tokens
 *                      in `refreshTokens`) → `{access_token, …}` for the token's user; unknown → 401.
 *                    `tokenRequestsBy(identity)` counts token requests per user ('anon' without).
 *   registry-1.docker.io  /v2/… needs `Bearer <token>` valid for the repository and not expired or
 *                      revoked, else 401 `WWW-Authenticate: Bearer realm=…,service=…,scope=…`.
 *                      Manifest GETs carry ratelimit-limit/-remaining and answer 429 past `limit`
 *                      (HEADs are not counted); blob GETs answer 307 to cdn.test.
 *   cdn.test         /cdn/<digest>?sig=… the blob bytes, no auth.
 *   private.test     a registry with Basic auth only (distribution + htpasswd): 401 `Basic realm=…`
 *                      unless `Authorization: Basic` matches `basicUser`.
 *
 * Every request is recorded in `hits` with its headers, so tests assert what reached each host.
 */
import https from 'node:https'
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { sha256, type Hit, type StoredManifest } from './fake-upstream.js'

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url))
export const HUB = 'registry-1.docker.io'
export const AUTH = 'auth.docker.io'
export const CDN = 'cdn.test'
export const BASIC = 'private.test'
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

interface IssuedToken { user?: string, repositories: string[], expiresAt: number }

export class FakeDockerHub {
  readonly hits: Hit[] = []
  readonly blobs = new Map<string, Buffer>()
  /** repository → reference → manifest (the same store serves registry-1.docker.io and basic.test). */
  readonly manifests = new Map<string, Map<string, StoredManifest>>()
  /** Repositories only a logged-in user may read. */
  readonly privateRepositories = new Set<string>()
  readonly users = new Map<string, string>([['hubuser', 'hub-s3cret-pw']])
  /** user → repository prefixes its private reads are limited to (absent: every private repository). */
  readonly userPrefixes = new Map<string, string[]>()
  /** Identity (refresh) token → user, for the OAuth2 POST. */
  readonly refreshTokens = new Map<string, string>()
  /** Identity of every token request: the user, `anon`, or `refused`. */
  readonly tokenRequests: string[] = []
  basicUser = { user: 'basicuser', password: 'basic-s3cret-pw' }
  /** expires_in of issued tokens (seconds); `omitExpiry` leaves it out (the 60 s default applies). */
  expiresIn = 300
  omitExpiry = false
  tokenField: 'token' | 'access_token' = 'token'
  /** Manifest GETs answered before 429 (HEADs are free, as on Docker Hub). */
  limit = 100
  manifestGets = 0
  readonly tokens = new Map<string, IssuedToken>()
  /** Blob → repositories whose images hold it (a registry answers 404 for a blob of another repository). */
  readonly blobRepositories = new Map<string, Set<string>>()
  /** The realm named in registry-1.docker.io's challenges (tests point it at a foreign host). */
  realm = `https://${AUTH}/token`
  private issued = 0
  private server?: https.Server

  /** Listens on `host` (e2e files each have their own loopback address), port 0. */
  async start (host = '127.0.0.1'): Promise<number> {
    this.server = https.createServer({ cert: readFileSync(`${FIXTURES}upstream.crt`), key: readFileSync(`${FIXTURES}upstream.key`) }, (req, res) => {
      this.handle(req, res).catch(() => res.destroy())
    })
    await new Promise<void>(resolve => this.server!.listen(0, host, resolve))
    return (this.server.address() as AddressInfo).port
  }

  connectTo (hosts = [HUB, AUTH, CDN, BASIC]): string {
    const { address, port } = this.server!.address() as AddressInfo
    return hosts.map(h => `${h}:443:${address}:${port}`).join(',')
  }

  async stop (): Promise<void> {
    this.server?.closeAllConnections()
    await new Promise<void>(resolve => this.server?.close(() => resolve()) ?? resolve())
  }

  /** A one-layer image; `private` makes the repository readable only with a user's token. */
  addImage (repository: string, tag: string, layer: string, opts: { private?: boolean } = {}): { manifest: StoredManifest, config: string, layer: string } {
    if (opts.private === true) this.privateRepositories.add(repository)
    const config = this.addBlob(JSON.stringify({ architecture: 'amd64', os: 'linux', repository }))
    const layerDigest = this.addBlob(layer)
    const body = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: this.blobs.get(config)!.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: this.blobs.get(layerDigest)!.length }],
    }))
    const manifest = { body, mediaType: OCI_MANIFEST, digest: sha256(body) }
    for (const d of [config, layerDigest]) this.blobRepositories.set(d, (this.blobRepositories.get(d) ?? new Set()).add(repository))
    const refs = this.manifests.get(repository) ?? new Map<string, StoredManifest>()
    refs.set(tag, manifest).set(manifest.digest, manifest)
    this.manifests.set(repository, refs)
    return { manifest, config, layer: layerDigest }
  }

  addBlob (data: string | Buffer): string {
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data)
    const d = sha256(buf)
    this.blobs.set(d, buf)
    return d
  }

  /**
   * Serves an OCI image layout's image (built by test/helpers/e2e/images.ts) as `repository:tag`:
   * its manifest under the tag and digest, every blob readable through this repository.
   */
  addLayout (repository: string, tag: string, blobs: Map<string, Buffer>, top: { digest: string, mediaType: string }, opts: { private?: boolean } = {}): void {
    if (opts.private === true) this.privateRepositories.add(repository)
    for (const [digest, data] of blobs) {
      this.blobs.set(digest, data)
      this.blobRepositories.set(digest, (this.blobRepositories.get(digest) ?? new Set()).add(repository))
    }
    const body = blobs.get(top.digest)
    if (body === undefined) throw new Error(`fake hub: ${top.digest} is not in the layout`)
    const manifest = { body, mediaType: top.mediaType, digest: top.digest }
    const refs = this.manifests.get(repository) ?? new Map<string, StoredManifest>()
    refs.set(tag, manifest).set(manifest.digest, manifest)
    this.manifests.set(repository, refs)
  }

  /** Hits on `host` (optionally with this method and a path containing `part`). */
  on (host: string, method?: string, part?: string): Hit[] {
    return this.hits.filter(h => h.host === host && (method === undefined || h.method === method) && (part === undefined || h.path.includes(part)))
  }

  /** Token requests made as `identity` (a user name, or `anon`). */
  tokenRequestsBy (identity: string): number {
    return this.tokenRequests.filter(i => i === identity).length
  }

  /** Makes every token issued so far invalid (the registry then answers 401 to it). */
  revokeAll (): void {
    for (const t of this.tokens.values()) t.expiresAt = 0
  }

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://x')
    const host = String(req.headers.host ?? '').replace(/:443$/, '')
    const hit: Hit = { method: req.method ?? 'GET', host, path: `${url.pathname}${url.search}`, headers: req.headers }
    this.hits.push(hit)
    if (host === AUTH || host === new URL(this.realm).host) return await this.token(req, res, url)
    if (host === CDN) {
      const data = this.blobs.get(url.pathname.replace('/cdn/', ''))
      return data === undefined ? this.error(res, 404, 'BLOB_UNKNOWN', req.method) : this.send(res, 200, 'application/octet-stream', data, req.method)
    }
    const path = url.pathname
    const m = /^\/v2\/(.+)\/(blobs|manifests)\/([^/]+)$/.exec(path)
    const repository = m?.[1]
    if (host === BASIC) {
      const want = `Basic ${Buffer.from(`${this.basicUser.user}:${this.basicUser.password}`).toString('base64')}`
      if (req.headers.authorization !== want) {
        res.setHeader('www-authenticate', 'Basic realm="basic-registry"')
        return this.error(res, 401, 'UNAUTHORIZED', req.method)
      }
    } else if (host === HUB) {
      const scope = repository !== undefined ? `repository:${repository}:pull` : undefined
      const bearer = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1]
      const t = bearer !== undefined ? this.tokens.get(bearer) : undefined
      const valid = t !== undefined && t.expiresAt > Date.now() && (repository === undefined || t.repositories.includes(repository))
      if (!valid) {
        res.setHeader('www-authenticate', `Bearer realm="${this.realm}",service="registry.docker.io"${scope !== undefined ? `,scope="${scope}",error="insufficient_scope"` : ''}`)
        return this.error(res, 401, 'UNAUTHORIZED', req.method)
      }
    } else {
      return this.error(res, 404, 'NAME_UNKNOWN', req.method)
    }
    if (path === '/v2/' || path === '/v2') return this.send(res, 200, 'application/json', Buffer.from('{}'), req.method)
    if (m === null || repository === undefined) return this.error(res, 404, 'NAME_UNKNOWN', req.method)
    const reference = decodeURIComponent(m[3])
    if (m[2] === 'manifests') {
      if (req.method === 'GET' && host === HUB) {
        this.manifestGets++
        const remaining = Math.max(0, this.limit - this.manifestGets)
        res.setHeader('ratelimit-limit', `${this.limit};w=21600`)
        res.setHeader('ratelimit-remaining', `${remaining};w=21600`)
        if (this.manifestGets > this.limit) return this.error(res, 429, 'TOOMANYREQUESTS', req.method)
      }
      const man = this.manifests.get(repository)?.get(reference)
      if (man === undefined) return this.error(res, 404, 'MANIFEST_UNKNOWN', req.method)
      res.setHeader('docker-content-digest', man.digest)
      return this.send(res, 200, man.mediaType, man.body, req.method)
    }
    const data = this.blobs.get(reference)
    const holders = this.blobRepositories.get(reference)
    if (data === undefined || (holders !== undefined && !holders.has(repository))) return this.error(res, 404, 'BLOB_UNKNOWN', req.method)
    if (host === HUB && req.method === 'GET') {
      res.writeHead(307, { location: `https://${CDN}/cdn/${reference}?sig=signed`, 'content-length': 0 })
      res.end()
      return
    }
    res.setHeader('docker-content-digest', reference)
    this.send(res, 200, 'application/octet-stream', data, req.method)
  }

  private async token (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    let user: string | undefined
    let params = url.searchParams
    if (req.method === 'POST') {
      const chunks: Buffer[] = []
      for await (const c of req) chunks.push(c as Buffer)
      params = new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
      user = params.get('grant_type') === 'refresh_token' ? this.refreshTokens.get(params.get('refresh_token') ?? '') : undefined
      if (user === undefined) { this.tokenRequests.push('refused'); return this.error(res, 401, 'UNAUTHORIZED') }
    }
    const basic = /^Basic (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1]
    if (basic !== undefined) {
      const [u, ...p] = Buffer.from(basic, 'base64').toString('utf8').split(':')
      if (this.users.get(u ?? '') !== p.join(':')) { this.tokenRequests.push('refused'); return this.error(res, 401, 'UNAUTHORIZED') }
      user = u
    }
    this.tokenRequests.push(user ?? 'anon')
    const prefixes = user !== undefined ? this.userPrefixes.get(user) : undefined
    const repositories = params.getAll('scope').flatMap(s => s.split(' '))
      .map(s => /^repository:(.+):[a-z,*]+$/.exec(s)?.[1]).filter((r): r is string => r !== undefined)
      .filter(r => !this.privateRepositories.has(r) || (user !== undefined && (prefixes === undefined || prefixes.some(p => r.startsWith(`${p}/`)))))
    const token = `tok-${++this.issued}-${user ?? 'anon'}`
    const expiresIn = this.expiresIn
    this.tokens.set(token, { user, repositories, expiresAt: Date.now() + (this.omitExpiry ? 60 : expiresIn) * 1000 })
    const body: Record<string, unknown> = { [req.method === 'POST' ? 'access_token' : this.tokenField]: token, issued_at: new Date().toISOString() }
    if (!this.omitExpiry) body.expires_in = expiresIn
    this.send(res, 200, 'application/json', Buffer.from(JSON.stringify(body)))
  }

  private send (res: ServerResponse, status: number, type: string, body: Buffer, method = 'GET'): void {
    res.writeHead(status, { 'content-type': type, 'content-length': body.length })
    res.end(method === 'HEAD' ? undefined : body)
  }

  private error (res: ServerResponse, status: number, code: string, method = 'GET'): void {
    this.send(res, status, 'application/json', Buffer.from(JSON.stringify({ errors: [{ code, message: code.toLowerCase(), detail: null }] })), method)
  }
}
