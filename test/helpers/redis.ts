/**
 * A real redis-server (Debian's) for tests: on one loopback address inside the test's network
 * namespace, no persistence, state dir in a temp dir. Ready when it answers PING (polled, bounded);
 * `stop` ends exactly the PID started here. The port is fixed (6379) on an address owned by one
 * test file: redis cannot report a kernel-picked port.
 */
import { connect } from 'node:net'
import { join } from 'node:path'
import { startDaemon, waitFor } from './e2e/daemon.js'

export interface Redis {
  /** redis://<address>:<port> */
  url: string
  pid: number
  stop: () => Promise<void>
}

export const REDIS_PORT = 6379

/** `port`: another than 6379 when two files share an address (each port owned by one file). */
export async function startRedis (address: string, dir: string, port = REDIS_PORT): Promise<Redis> {
  const d = startDaemon('redis-server', 'redis-server', [
    '--bind', address, '--port', String(port), '--dir', dir,
    '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--protected-mode', 'no',
  ], { logFile: join(dir, 'redis.out') })
  try {
    await waitFor('redis-server to answer PING', async () => await ping(address, port), {
      timeoutMs: 20_000, intervalMs: 50, abort: () => d.hasExited() ? `redis-server exited: ${d.logTail(500)}` : undefined,
    })
  } catch (err) {
    await d.stop()
    throw err
  }
  return { url: `redis://${address}:${port}`, pid: d.pid, stop: async () => { await d.stop() } }
}

/** True when the server answers `+PONG` to an inline PING. */
async function ping (host: string, port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const socket = connect({ host, port })
    let got = ''
    socket.setTimeout(2000, () => { socket.destroy(); resolve(false) })
    socket.once('error', () => resolve(false))
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.on('data', (c: Buffer) => {
      got += c.toString('latin1')
      if (got.includes('\r\n')) { socket.destroy(); resolve(got.startsWith('+PONG')) }
    })
  })
}
