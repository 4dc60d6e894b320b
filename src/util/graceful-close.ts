/**
 * Closing an HTTP server without cutting responses in flight (graceful shutdown, SHUTDOWN_TIMEOUT).
 *
 * Node's `server.close()` stops accepting and `closeIdleConnections()` ends idle keep-alive
 * connections, but a connection whose response is in flight becomes an idle keep-alive connection
 * when that response ends, and nothing closes it: `close()` would then wait for KEEPALIVE_TIMEOUT.
 * So the tracker watches every response; once closing, each finished response closes the idle
 * connections again, and new requests on open connections are answered with `connection: close`.
 * At the deadline whatever is left is cut.
 */
import type http from 'node:http'

export interface GracefulCloser {
  /** True once `close` was called. */
  readonly closing: boolean
  /**
   * Stops accepting, lets responses in flight finish for up to `timeoutMs`, then closes every
   * connection. Resolves when the server has closed; `forced` tells whether the deadline cut any.
   */
  close: (timeoutMs: number) => Promise<{ forced: boolean }>
}

/** Call once, right after creating the server (it must see every request). */
export function trackForGracefulClose (server: http.Server): GracefulCloser {
  let closing = false
  const closeIdleSoon = (): void => {
    // After 'close' of the response the socket is only marked idle on the next tick.
    setImmediate(() => server.closeIdleConnections())
  }
  server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (closing && !res.headersSent) res.setHeader('connection', 'close')
    res.once('close', () => { if (closing) closeIdleSoon() })
  })
  return {
    get closing () { return closing },
    close: async timeoutMs => {
      closing = true
      let forced = false
      const closed = new Promise<void>(resolve => server.close(() => resolve()))
      server.closeIdleConnections()
      const timer = setTimeout(() => { forced = true; server.closeAllConnections() }, timeoutMs)
      await closed
      clearTimeout(timer)
      return { forced }
    },
  }
}
