// Graceful shutdown of the built `crossdock serve` (a child process, as an operator or an
// orchestrator runs it): SIGTERM in the middle of a throttled download through the proxy door lets
// that download finish whole, refuses new connections meanwhile, and exits 0; SHUTDOWN_TIMEOUT cuts
// what does not finish in time, and the exit is still 0.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FakeUpstream, TEST_CA_FILE } from '../../helpers/fake-upstream.js'
import { streamThrough, readBody } from '../cache/harness.js'
import { CLI, ensureBuilt } from './built-cli.js'

const HUB = 'registry-1.docker.io'

interface Served {
  child: ChildProcess
  proxyPort: number
  caPem: string
  logs: Array<Record<string, unknown>>
  /** The first log line matching, once it is written. */
  line: (match: (l: Record<string, unknown>) => boolean) => Promise<Record<string, unknown>>
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

async function serve (t: Test, upstream: FakeUpstream, env: Record<string, string>): Promise<Served> {
  const dir = await mkdtemp(join(tmpdir(), 'crossdock-shutdown-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const child = spawn(process.execPath, [CLI, 'serve'], {
    env: {
      PATH: process.env.PATH ?? '',
      PROXY_PORT: '0', REGISTRY_PORT: '0', LISTEN_HOST: '127.0.0.1',
      CA_DIR: join(dir, 'ca'), CACHE_DIR: join(dir, 'cache'), REGISTRY_STORAGE_DIR: join(dir, 'registry'),
      UPSTREAM_CONNECT_TO: upstream.connectTo([HUB]), UPSTREAM_CA_FILE: TEST_CA_FILE, CACHE_MIN_FREE: '0', LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.once('exit', (code, signal) => resolve({ code, signal })))
  // Never leave it behind, whatever the test did (by PID: only the child we started).
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const logs: Array<Record<string, unknown>> = []
  const waiters: Array<() => void> = []
  let tail = ''
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString() })
  child.stdout!.on('data', (c: Buffer) => {
    const lines = (tail + c.toString()).split('\n')
    tail = lines.pop() ?? ''
    for (const l of lines) if (l.trim() !== '') logs.push(JSON.parse(l))
    for (const w of waiters.splice(0)) w()
  })
  const line = async (match: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
    for (;;) {
      const found = logs.find(match)
      if (found !== undefined) return found
      if (child.exitCode !== null) throw new Error(`crossdock exited ${child.exitCode}: ${stderr}`)
      await new Promise<void>(resolve => { waiters.push(resolve); child.once('exit', () => resolve()) })
    }
  }
  const listening = await line(l => typeof l.proxy === 'string')
  const proxyPort = Number(String(listening.proxy).split(':').pop())
  return { child, proxyPort, caPem: await readFile(join(dir, 'ca', 'ca.crt'), 'utf8'), logs, line, exited }
}

async function connectRefused (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(false) })
    s.once('error', err => resolve((err as NodeJS.ErrnoException).code === 'ECONNREFUSED'))
  })
}

let upstream: FakeUpstream
t.before(async () => {
  await ensureBuilt()
  upstream = new FakeUpstream()
  await upstream.start()
})
t.teardown(async () => { await upstream?.stop() })

t.test('SIGTERM mid-download: the download finishes whole, new connections are refused, exit 0', async t => {
  const layer = randomBytes(2 * 1024 * 1024)
  const digest = upstream.addBlob(layer)
  upstream.throttle = 1024 * 1024 // ~2 s for the whole blob
  t.teardown(() => { upstream.throttle = 0 })
  const s = await serve(t, upstream, { SHUTDOWN_TIMEOUT: '60s' })
  const download = await streamThrough(s, HUB, `/v2/library/big/blobs/${digest}`)
  t.equal(download.status, 200)
  // The first bytes are through: the response is in flight when the signal comes.
  await new Promise(resolve => download.res.once('readable', resolve))
  const body = readBody(download)
  s.child.kill('SIGTERM')
  await s.line(l => l.msg === 'shutting down: finishing requests in flight')
  t.ok(await connectRefused(s.proxyPort), 'no longer accepting')
  const got = await body
  t.ok(got.complete, 'the body ended cleanly')
  t.equal(`sha256:${createHash('sha256').update(got.body).digest('hex')}`, digest, 'whole body, right digest')
  t.same(await s.exited, { code: 0, signal: null }, 'exit 0')
  t.ok(s.logs.some(l => l.msg === 'stopped'), 'the last log line made it out (flushed)')
  t.ok(s.logs.some(l => l.msg === 'request' && l.status === 200 && l.bytes === layer.length), 'the download\'s log line, all bytes')
})

t.test('SHUTDOWN_TIMEOUT cuts a download that does not finish in time; still exit 0', async t => {
  const layer = randomBytes(4 * 1024 * 1024)
  const digest = upstream.addBlob(layer)
  upstream.throttle = 256 * 1024 // ~16 s: far past the timeout
  t.teardown(() => { upstream.throttle = 0 })
  const s = await serve(t, upstream, { SHUTDOWN_TIMEOUT: '1s' })
  const download = await streamThrough(s, HUB, `/v2/library/slow/blobs/${digest}`)
  await new Promise(resolve => download.res.once('readable', resolve))
  const body = readBody(download)
  s.child.kill('SIGTERM')
  const got = await body
  t.notOk(got.complete, 'cut at the deadline')
  t.ok(got.body.length < layer.length)
  t.same(await s.exited, { code: 0, signal: null }, 'exit 0')
})
