/**
 * Small helpers for upstream response bodies, which the caller always owns (upstream-client.ts):
 * every body is either read or destroyed, or undici keeps the connection busy.
 */
import type { Readable } from 'node:stream'

/** What a discarded body may still be read for, so its connection can serve the next request. */
const DRAIN_BYTES = 64 << 10

/**
 * Drops a body we do not want. A body that ends within 64 KiB (a HEAD's empty one, a 401's JSON, a
 * redirect's few bytes) is read to its end: undici then keeps the connection. Destroying it unread
 * made undici close the socket, so every tag HEAD paid a new TCP and TLS handshake (issue 20: 400
 * handshakes for 400 tag resolutions). A longer body is destroyed once past the limit (its error
 * is expected and swallowed).
 */
export function discardBody (body: Readable): void {
  body.on('error', () => {})
  if (body.readableEnded || body.destroyed) return
  let seen = 0
  body.on('data', (c: Buffer) => {
    seen += c.length
    if (seen > DRAIN_BYTES) body.destroy()
  })
  body.resume()
}

/** Reads a small body whole; past `max` bytes the body is dropped and `tooLarge()` is thrown. */
export async function readBody (body: Readable, max: number, tooLarge: () => Error): Promise<Buffer> {
  const chunks: Buffer[] = []
  let n = 0
  for await (const c of body) {
    n += (c as Buffer).length
    if (n > max) { discardBody(body); throw tooLarge() }
    chunks.push(c as Buffer)
  }
  return Buffer.concat(chunks)
}

/** Reads a small JSON body whole; rejects past `max` bytes or on bad JSON. */
export async function readJson (body: Readable, max: number): Promise<unknown> {
  const bytes = await readBody(body, max, () => new Error(`body larger than ${max} bytes`))
  return JSON.parse(bytes.toString('utf8'))
}
