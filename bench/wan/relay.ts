/**
 * A user-space WAN between a client and a server on loopback (this kernel has no netem): a TCP relay
 * that delays every byte by a one-way delay per direction, and paces it through a link shared by
 * every connection and an optional per-connection cap (a long fat pipe, or a CDN shaping each
 * connection: one TCP stream gets window/RTT).
 *
 *   client ──► relay socket ──► [per-connection pacing] ─► [shared link pacing] ─► +delay ─► server
 *   client ◄── +delay ◄─ [shared link] ◄─ [per-connection] ◄── server            (the same, mirrored)
 *
 * Model, per direction: a segment of n bytes read at time t starts transmitting at
 * max(t, connection free, link free), occupies the connection for n/connRate and the link for
 * n/linkRate, and is delivered `delayMs` after it finished. Each connection's segments are
 * delivered in order. Backpressure: a connection with more than WINDOW bytes in flight stops
 * reading its source until they are delivered (so a slow link never makes the relay buffer a blob).
 * Also counts connections (each upstream TCP connection, TLS inside, is one).
 */
import net from 'node:net'
import type { AddressInfo } from 'node:net'

export interface WanOptions {
  /** Where the relay listens (port 0 picks). */
  host: string
  port?: number
  target: { host: string, port: number }
  /** One-way delay per direction, ms (25 → 50 ms RTT). */
  delayMs: number
  /** Shared link rate per direction, bits/s (0: unlimited). */
  linkBps: number
  /** Per-connection rate cap per direction, bits/s (0: none). */
  connBps: number
}

export interface Wan {
  port: number
  /** Connections accepted so far. */
  readonly connections: number
  close: () => Promise<void>
}

/** Bytes a connection may have in flight per direction before its source is paused. */
const WINDOW = 4 << 20
/** Segments are paced at most this big, so a 64 KiB read does not arrive as one lump. */
const SEGMENT = 16 << 10

interface Link { free: number }

export async function startWan (opts: WanOptions): Promise<Wan> {
  const up: Link = { free: 0 }
  const down: Link = { free: 0 }
  let connections = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer(client => {
    connections++
    const server = net.connect(opts.target.port, opts.target.host)
    sockets.add(client).add(server)
    client.setNoDelay(true)
    server.setNoDelay(true)
    pipeDelayed(client, server, up, opts)
    pipeDelayed(server, client, down, opts)
    // A clean close is relayed as an end, after the bytes still on the wire (pipeDelayed); only an
    // error cuts the other side at once (a server answering `Connection: close` closes its socket
    // before the delayed response has reached the client).
    const fail = (): void => { client.destroy(); server.destroy() }
    client.on('error', fail).on('close', () => { sockets.delete(client) })
    server.on('error', fail).on('close', () => { sockets.delete(server) })
  })
  await new Promise<void>(resolve => server.listen(opts.port ?? 0, opts.host, resolve))
  return {
    port: (server.address() as AddressInfo).port,
    get connections () { return connections },
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
    },
  }
}

function pipeDelayed (from: net.Socket, to: net.Socket, link: Link, opts: WanOptions): void {
  let connFree = 0
  let inFlight = 0
  let ended = false
  const queue: Array<{ at: number, data: Buffer | null }> = []
  let timer: NodeJS.Timeout | undefined
  const flush = (): void => {
    timer = undefined
    const now = performance.now()
    while (queue.length > 0 && queue[0].at <= now + 0.5) {
      const { data } = queue.shift()!
      if (data === null) { to.end(); return }
      inFlight -= data.length
      if (!to.destroyed) to.write(data)
    }
    if (inFlight < WINDOW && from.isPaused() && !ended) from.resume()
    if (queue.length > 0) timer = setTimeout(flush, Math.max(0, queue[0].at - performance.now()))
  }
  const schedule = (at: number, data: Buffer | null): void => {
    queue.push({ at, data })
    if (timer === undefined) timer = setTimeout(flush, Math.max(0, at - performance.now()))
  }
  from.on('data', (chunk: Buffer) => {
    for (let off = 0; off < chunk.length; off += SEGMENT) {
      const seg = chunk.subarray(off, off + SEGMENT)
      const now = performance.now()
      const start = Math.max(now, connFree, opts.linkBps > 0 ? link.free : 0)
      const connDone = opts.connBps > 0 ? start + seg.length * 8000 / opts.connBps : start
      const linkDone = opts.linkBps > 0 ? start + seg.length * 8000 / opts.linkBps : start
      connFree = connDone
      if (opts.linkBps > 0) link.free = linkDone
      inFlight += seg.length
      schedule(Math.max(connDone, linkDone) + opts.delayMs, seg)
    }
    if (inFlight >= WINDOW) from.pause()
  })
  from.on('end', () => {
    ended = true
    schedule(Math.max(performance.now(), connFree) + opts.delayMs, null)
  })
}
