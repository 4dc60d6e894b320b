/**
 * A client of one crossdock registry door (or any OCI registry) over HTTP: what `crossdock warm`,
 * `export` and `import` — and the server's own warm-up — send. Being a client is the point: every
 * read goes through the door's routing, access checks and pull-through cache, every write through
 * the hosted registry's validation, so these tools never touch storage themselves.
 *
 * Failures are `ClientError`s whose message is the one line an operator needs: which URL, what the
 * registry said (its OCI error code and message), or why it could not be reached.
 */
import type { Readable } from 'node:stream'
import { Agent, request, type Dispatcher } from 'undici'

import { MANIFEST_ACCEPT } from '../oci/media-types.js'

export class ClientError extends Error {
  override readonly name = 'ClientError'
  constructor (message: string, readonly status?: number, readonly headers: Record<string, string> = {}) {
    super(message)
  }
}

export interface FetchedManifest {
  digest: string
  mediaType: string
  bytes: Buffer
  /** X-Cache-Status of a crossdock door (HIT, MISS, …), when it said. */
  cacheStatus?: string
}

export interface RegistryClientOptions {
  /** `http://host:port` of the registry door. */
  baseUrl: string
  /** Sent as is on every request (`Basic …` for HTPASSWD_FILE). Never logged, never in an error. */
  authorization?: string
  /** Test hook and connection reuse; default: a private keep-alive agent. */
  dispatcher?: Dispatcher
}

type Headers = Record<string, string | string[] | undefined>

export class RegistryClient {
  readonly baseUrl: string
  private readonly dispatcher: Dispatcher
  private readonly ownDispatcher: boolean

  constructor (private readonly opts: RegistryClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '')
    this.ownDispatcher = opts.dispatcher === undefined
    // No body or headers timeout: a 10 GB layer may take long, and a cold pull-through fill may
    // take a while before its first byte; the server's own timeouts bound the upstream side.
    this.dispatcher = opts.dispatcher ?? new Agent({ bodyTimeout: 0, headersTimeout: 0, keepAliveTimeout: 4_000 })
  }

  async close (): Promise<void> {
    if (this.ownDispatcher) await this.dispatcher.close()
  }

  /** GET (or HEAD) of a manifest; undefined when the registry says it does not exist (404). */
  async manifest (name: string, reference: string, method: 'GET' | 'HEAD' = 'GET'): Promise<FetchedManifest | undefined> {
    const r = await this.send(method, `/v2/${name}/manifests/${reference}`, { accept: MANIFEST_ACCEPT })
    if (r.statusCode === 404) { await drain(r.body); return undefined }
    if (r.statusCode !== 200) throw await this.failure(r, `${method} ${name}:${reference}`)
    const bytes = method === 'HEAD' ? Buffer.alloc(0) : Buffer.from(await r.body.arrayBuffer())
    if (method === 'HEAD') await drain(r.body)
    return {
      digest: header(r.headers, 'docker-content-digest') ?? '',
      mediaType: (header(r.headers, 'content-type') ?? '').split(';')[0].trim(),
      bytes,
      cacheStatus: header(r.headers, 'x-cache-status'),
    }
  }

  /** Whether the registry has the blob (HEAD), and what its cache said. */
  async hasBlob (name: string, digest: string): Promise<{ exists: boolean, cacheStatus?: string }> {
    const r = await this.send('HEAD', `/v2/${name}/blobs/${digest}`)
    await drain(r.body)
    if (r.statusCode === 404) return { exists: false }
    if (r.statusCode !== 200) throw await this.failure(r, `HEAD ${name}@${digest}`)
    return { exists: true, cacheStatus: header(r.headers, 'x-cache-status') }
  }

  /** The blob's body; the caller owns it (consume or destroy it). */
  async blob (name: string, digest: string): Promise<{ body: Readable, size?: number, cacheStatus?: string }> {
    const r = await this.send('GET', `/v2/${name}/blobs/${digest}`)
    if (r.statusCode !== 200) throw await this.failure(r, `GET ${name}@${digest}`)
    const length = header(r.headers, 'content-length')
    return { body: r.body, size: length === undefined ? undefined : Number(length), cacheStatus: header(r.headers, 'x-cache-status') }
  }

  /** Uploads a blob in one streamed PUT (spec: POST then PUT with `?digest=`; the registry verifies). */
  async pushBlob (name: string, digest: string, size: number, body: Readable): Promise<void> {
    const start = await this.send('POST', `/v2/${name}/blobs/uploads/`)
    await drain(start.body)
    if (start.statusCode !== 202) { body.destroy(); throw await this.failure(start, `upload to ${name}`) }
    const location = header(start.headers, 'location')
    if (location === undefined) { body.destroy(); throw new ClientError(`${this.baseUrl}: upload to ${name}: no Location in the 202 answer`) }
    const url = new URL(location, `${this.baseUrl}/`)
    url.searchParams.set('digest', digest)
    const put = await this.send('PUT', `${url.pathname}${url.search}`, { 'content-type': 'application/octet-stream', 'content-length': String(size) }, body)
    await drain(put.body)
    if (put.statusCode !== 201) throw await this.failure(put, `upload of ${digest} to ${name}`)
  }

  async putManifest (name: string, reference: string, bytes: Buffer, mediaType: string): Promise<void> {
    const r = await this.send('PUT', `/v2/${name}/manifests/${reference}`, { 'content-type': mediaType }, bytes)
    if (r.statusCode !== 201) throw await this.failure(r, `PUT ${name}:${reference}`)
    await drain(r.body)
  }

  /** A request to a crossdock-specific path (`/warm`, `/import/…`); the caller reads the answer. */
  async send (method: string, path: string, headers: Record<string, string> = {}, body?: Buffer | Readable | string): Promise<Dispatcher.ResponseData> {
    const all: Record<string, string> = { ...headers }
    if (this.opts.authorization !== undefined) all.authorization = this.opts.authorization
    try {
      return await request(`${this.baseUrl}${path}`, { method: method as Dispatcher.HttpMethod, headers: all, body, dispatcher: this.dispatcher })
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? ''
      const why: Record<string, string> = {
        ECONNREFUSED: 'connection refused (is crossdock running, and is this its REGISTRY_PORT?)',
        ENOTFOUND: 'host not found',
        EHOSTUNREACH: 'host unreachable',
        ETIMEDOUT: 'connection timed out',
      }
      throw new ClientError(`cannot reach ${this.baseUrl}: ${why[code] ?? (err as Error).message}${code === '' ? '' : ` (${code})`}`)
    }
  }

  /** A non-success answer as one line: what was asked, the status, the registry's OCI error. */
  async failure (r: Dispatcher.ResponseData, what: string): Promise<ClientError> {
    let reason = ''
    try {
      const text = (await r.body.text()).slice(0, 2000)
      try {
        const e = JSON.parse(text)?.errors?.[0]
        reason = e === undefined ? text.trim().split('\n')[0] : `${String(e.code)}: ${String(e.message)}`
      } catch { reason = text.trim().split('\n')[0] }
    } catch { /* no body */ }
    const flat: Record<string, string> = {}
    for (const [k, v] of Object.entries(r.headers as Headers)) if (v !== undefined) flat[k] = Array.isArray(v) ? v.join(', ') : v
    const hint = r.statusCode === 401 ? ' (pass --creds user:password: HTPASSWD_FILE is on)' : ''
    return new ClientError(`${what}: ${r.statusCode}${reason === '' ? '' : ` ${reason}`}${hint}`, r.statusCode, flat)
  }
}

export function header (headers: Headers, name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v[0] : v
}

async function drain (body: Dispatcher.ResponseData['body']): Promise<void> {
  try { await body.dump() } catch { /* the connection is gone; nothing to read */ }
}
