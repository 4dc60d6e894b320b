/**
 * Issue 14, finding 2: raw tunnels never timed out (200 idle tunnels held 416 descriptors 30 s
 * after every other timeout). Now a tunnel silent for PROXY_CONNECT_READ_TIMEOUT /
 * PROXY_CONNECT_SEND_TIMEOUT is closed, half-open ones too, the process's descriptors come back
 * to their baseline (counted in /proc/self/fd: the app runs in this process), a busy tunnel
 * outlives the timeouts, and MAX_TUNNELS answers 503 beyond its bound.
 *
 * For the timeouts the far end is a TCP server in a child process that never writes and keeps
 * half-open sockets, so nothing but crossdock's own timers can close a tunnel, and the descriptors
 * counted here are the test clients' and crossdock's only. The test waits on close events, with a
 * deadline that only turns a hang into a failure.
 */
import t from 'tap'
import net from 'node:net'
import { readdirSync } from 'node:fs'
import { spawn } from 'node:child_process'
import { startApp } from '../../helpers/start-app.js'
import { connectThrough } from '../../helpers/proxy-client.js'

interface Far { port: number, accepted: () => number, closed: () => number, waitClosed: (n: number) => Promise<void>, close: () => void }

/** An in-process far end that reads and never answers (or echoes), counting connections and closes; it closes when its peer does. */
async function startFar (echo = false): Promise<Far> {
  let accepted = 0
  let closed = 0
  const waiters: Array<{ n: number, resolve: () => void }> = []
  const server = net.createServer(s => {
    accepted++
    s.on('error', () => {})
    if (echo) s.pipe(s)
    else s.resume()
    s.once('close', () => {
      closed++
      for (const w of waiters.filter(w => closed >= w.n)) { waiters.splice(waiters.indexOf(w), 1); w.resolve() }
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    closed: () => closed,
    waitClosed: async n => { if (closed >= n) return; await new Promise<void>(resolve => waiters.push({ n, resolve })) },
    close: () => { server.close() },
  }
}

/** A far end in its own process: reads, never writes, never closes (half-open sockets stay). */
async function startSilentFar (): Promise<{ port: number, close: () => void }> {
  const script = "const s = require('net').createServer({ allowHalfOpen: true }, c => { c.on('error', () => {}); c.resume() }); s.listen(0, '127.0.0.1', () => console.log(s.address().port))"
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())))
    child.once('exit', code => reject(new Error(`far end exited (${code})`)))
  })
  return { port, close: () => { child.kill() } }
}

const fds = (): number => readdirSync('/proc/self/fd').length

/** Resolves with whether `p` settled before `ms` (a deadline for failing, never for ordering). */
async function within (p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<false>(resolve => { timer = setTimeout(() => resolve(false), ms) })
  const r = await Promise.race([p.then(() => true), late])
  clearTimeout(timer)
  return r
}

t.test('idle and half-open tunnels are closed after PROXY_CONNECT_*_TIMEOUT; descriptors return to baseline', async t => {
  const far = await startSilentFar()
  const app = await startApp({
    PROXY_CONNECT_READ_TIMEOUT: '1s',
    PROXY_CONNECT_SEND_TIMEOUT: '1s',
    UPSTREAM_CONNECT_TO: `silent.test:443:127.0.0.1:${far.port}`,
  })
  t.teardown(async () => { await app.stop(); far.close() })

  const closed = async (s: net.Socket): Promise<void> => { if (!s.destroyed) await new Promise(resolve => s.once('close', resolve)) }
  // One tunnel first (left to time out), so that whatever a first tunnel opens lazily is in the baseline.
  const warm = await connectThrough(app.proxyPort, 'silent.test:443')
  t.ok(await within(closed(warm.socket), 20_000), 'the first idle tunnel was closed by crossdock')
  const baseline = fds()

  const IDLE = 100
  const HALF_OPEN = 20
  const clients: net.Socket[] = []
  for (let i = 0; i < IDLE + HALF_OPEN; i++) {
    const r = await connectThrough(app.proxyPort, 'silent.test:443')
    t.equal(r.status, 200)
    if (i >= IDLE) r.socket.end('half-open: this side is done sending')
    clients.push(r.socket)
  }
  const held = fds() - baseline
  t.ok(held >= 3 * (IDLE + HALF_OPEN), `each tunnel holds 3 descriptors here: the client's and crossdock's two (${held} above baseline ${baseline})`)
  t.ok(await within(Promise.all(clients.map(closed)), 20_000), 'crossdock closed every tunnel')
  // crossdock destroys both ends of a tunnel together; their handles are released a turn later.
  await new Promise(resolve => setImmediate(resolve))
  t.equal(fds(), baseline, `descriptors back to the baseline (${baseline}; ${held} held before)`)
  const lines = app.logs.filter(l => l.msg === 'tunnel' && l.host === 'silent.test:443')
  t.equal(lines.filter(l => /^PROXY_CONNECT_(READ|SEND)_TIMEOUT$/.test(l.closed)).length, 1 + IDLE + HALF_OPEN, 'each closed by a tunnel timeout, logged')
  t.match(await (await fetch(`http://127.0.0.1:${app.proxyPort}/metrics`)).text(), /crossdock_tunnels_open 0\n/)
})

t.test('a busy tunnel outlives the timeouts', async t => {
  const far = await startFar(true)
  const app = await startApp({ PROXY_CONNECT_READ_TIMEOUT: '1s', PROXY_CONNECT_SEND_TIMEOUT: '1s', UPSTREAM_CONNECT_TO: `echo.test:443:127.0.0.1:${far.port}` })
  t.teardown(async () => { await app.stop(); far.close() })
  const r = await connectThrough(app.proxyPort, 'echo.test:443')
  t.equal(r.status, 200)
  // Ten round trips 200 ms apart: 2 s of tunnel, never 1 s silent. (The gap leaves 800 ms for a
  // loaded machine's timer lag: at 400 ms timeouts and 150 ms gaps a full-suite run on 2 busy
  // cores once cut the tunnel.)
  for (let i = 0; i < 10; i++) {
    r.socket.write(`ping ${i}`)
    t.equal(String(await new Promise(resolve => r.socket.once('data', resolve))), `ping ${i}`)
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  t.notOk(r.socket.destroyed, 'still open')
  r.socket.destroy()
})

t.test('MAX_TUNNELS: beyond it, 503; a closed tunnel frees its place', async t => {
  const far = await startFar()
  const app = await startApp({ MAX_TUNNELS: '3', UPSTREAM_CONNECT_TO: `silent.test:443:127.0.0.1:${far.port}` })
  t.teardown(async () => { await app.stop(); far.close() })
  const open = []
  for (let i = 0; i < 3; i++) {
    const r = await connectThrough(app.proxyPort, 'silent.test:443')
    t.equal(r.status, 200, `tunnel ${i + 1}`)
    open.push(r.socket)
  }
  const over = await connectThrough(app.proxyPort, 'silent.test:443')
  t.equal(over.status, 503, 'the fourth: 503')
  t.match(over.body, /too many open tunnels \(MAX_TUNNELS=3\)/)
  t.equal(far.accepted(), 3, 'and it dialled nothing')
  open[0].destroy()
  t.ok(await within(far.waitClosed(1), 10_000), 'crossdock closed the far end of the tunnel the client left')
  const again = await connectThrough(app.proxyPort, 'silent.test:443')
  t.equal(again.status, 200, 'a freed place is used again')
  for (const s of [...open, again.socket]) s.destroy()
})
