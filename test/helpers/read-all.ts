/** Test helper: reads a whole response body, noting whether it ended cleanly or was cut. */
import type http from 'node:http'

export interface ReadResponse {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
  /** True when the body ended cleanly; false when the connection was cut mid-body. */
  complete: boolean
}

export async function readAll (res: http.IncomingMessage): Promise<ReadResponse> {
  const chunks: Buffer[] = []
  return await new Promise(resolve => {
    let settled = false
    const done = (complete: boolean): void => {
      if (settled) return
      settled = true
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete })
    }
    res.on('data', (c: Buffer) => chunks.push(c))
    res.on('end', () => done(res.complete))
    res.on('aborted', () => done(false))
    res.on('error', () => done(false))
    res.on('close', () => done(res.complete))
  })
}
