/**
 * How both doors treat a client that does not send a proper request head: too slowly
 * (CLIENT_HEADER_TIMEOUT, the slow-loris defence), too large, or malformed.
 *
 * Node checks `headersTimeout` only every `connectionsCheckingInterval` (30 s by default), so a
 * 1 s CLIENT_HEADER_TIMEOUT would really be 31 s and the 60 s default up to 90 s. Servers pass
 * `headCheckIntervalMs(timeout)` instead: a quarter of the timeout, between 250 ms and 5 s.
 */
import type { Duplex } from 'node:stream'

export function headCheckIntervalMs (headerTimeoutMs: number): number {
  return Math.min(5000, Math.max(250, Math.floor(headerTimeoutMs / 4)))
}

/**
 * The raw response for a Node `clientError` (the request never reached a handler), as Node's own
 * default would write it: 431 for an oversized head, 408 for a head that did not arrive in time,
 * 400 for anything unparsable.
 */
function clientErrorResponse (err: Error & { code?: string }): string {
  const [status, reason] = err.code === 'HPE_HEADER_OVERFLOW'
    ? [431, 'Request Header Fields Too Large']
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'Request Timeout'] : [400, 'Bad Request']
  return `HTTP/1.1 ${status} ${reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`
}

/** Writes `clientErrorResponse(err)` if the client can still read it, then closes its socket. */
export function refuseClientHead (socket: Duplex, err: Error & { code?: string }): void {
  if (socket.writable) socket.end(clientErrorResponse(err), () => socket.destroy())
  else socket.destroy()
}
