/**
 * Small helpers for upstream response bodies, which the caller always owns (upstream-client.ts):
 * every body is either read or destroyed, or undici keeps the connection busy.
 */
import type { Readable } from 'node:stream'

/** Drops a body we do not want (undici errors a body destroyed unread: that error is expected). */
export function discardBody (body: Readable): void {
  body.on('error', () => {})
  body.destroy()
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
