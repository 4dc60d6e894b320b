// Issue 13: a joiner arriving at every moment of a fill's life, through the proxy door on keep-alive
// connections (as containerd's Go client pulls). The fill is paused at each step by the cache's
// fill hook, the joiner's request is sent while it is held there, then the fill goes on. Every
// client gets the whole, correct body, or (a failed fill) an aborted connection; never a connection
// closed without a status line, and the joiner's connection serves its next request.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import type { BlobFill, FillHook, FillStep } from '../../../src/cache/blob-fill.js'
import { sha256 } from '../../helpers/fake-upstream.js'
import { keepAliveClient, startWithUpstream, type Harness } from './harness.js'
import type { FakeUpstream } from '../../helpers/fake-upstream.js'
import { parseDigest } from '../../../src/oci/digest.js'

const HUB = 'registry-1.docker.io'

/** Holds the fill of one digest at one step until `release`; `reached` resolves when it got there. */
export interface Pause {
  hook: FillHook
  hold: (digest: string, step: FillStep) => void
  reached: Promise<BlobFill>
  release: () => void
}

export function pause (): Pause {
  let target: { digest: string, step: FillStep } | undefined
  let reach: (f: BlobFill) => void = () => {}
  const reached = new Promise<BlobFill>(resolve => { reach = resolve })
  let release: () => void = () => {}
  const gate = new Promise<void>(resolve => { release = resolve })
  return {
    hook: async (step, fill) => {
      if (target === undefined || step !== target.step || fill.digest.value !== target.digest) return
      target = undefined
      reach(fill)
      await gate
    },
    hold: (digest, step) => { target = { digest, step } },
    reached,
    release: () => release(),
  }
}

/** Resolves once `fill` has `n` readers, or `other` settled (a joiner served without the fill: a HIT). */
async function attachedOrDone (fill: BlobFill, n: number, other: Promise<unknown>): Promise<void> {
  if (fill.readerCount >= n) return
  await Promise.race([
    new Promise<void>(resolve => { const on = (): void => { if (fill.readerCount >= n) { fill.off('attach', on); resolve() } }; fill.on('attach', on) }),
    other.then(() => {}, () => {}),
  ])
}

/** The first upstream GET of `d` answers 200 with `spoil(data)` instead of the blob's bytes. */
function corruptFirstGet (up: FakeUpstream, d: string, spoil: (data: Buffer) => Buffer): void {
  const data = up.blobs.get(d) as Buffer
  let corrupt = true
  up.fault = async (_req, res, hit) => {
    if (!corrupt || hit.method !== 'GET' || !hit.path.endsWith(d)) return false
    corrupt = false
    const bad = spoil(data)
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bad.length })
    res.end(bad)
    return true
  }
}

async function setup (t: Test, env: Record<string, string> = {}): Promise<{ up: FakeUpstream, h: Harness, p: Pause }> {
  const p = pause()
  const { up, h } = await startWithUpstream(t, env, { fillHook: p.hook })
  t.teardown(() => p.release())
  return { up, h, p }
}

const STEPS: FillStep[] = ['opened', 'first-byte', 'last-byte', 'verified', 'renamed', 'indexed', 'committed']

for (const step of STEPS) {
  t.test(`a joiner arriving while the fill is held at '${step}' gets the whole body on a connection that stays open`, async t => {
    const { up, h, p } = await setup(t)
    const data = randomBytes(3 << 20)
    const d = up.addBlob(data)
    const other = up.addBlob(randomBytes(1000))
    p.hold(d, step)
    const leader = await keepAliveClient(h, HUB)
    const joiner = await keepAliveClient(h, HUB)
    t.teardown(() => { leader.close(); joiner.close() })
    const a = leader.get(`/v2/library/x/blobs/${d}`)
    const fill = await p.reached
    const b = joiner.get(`/v2/library/y/blobs/${d}`)
    await attachedOrDone(fill, 2, b)
    p.release()
    const [ra, rb] = await Promise.all([a, b])
    for (const [who, r] of [['leader', ra], ['joiner', rb]] as const) {
      t.equal(r.status, 200, `${who}: 200`)
      t.ok(r.complete, `${who}: clean end`)
      t.equal(sha256(r.body), d, `${who}: the right bytes`)
    }
    t.equal(ra.headers['x-cache-status'], 'MISS')
    t.match(rb.headers['x-cache-status'], /^(JOINED|HIT)$/)
    t.equal(up.count('GET', `/blobs/${d}`), 1, 'one upstream GET')
    const next = await joiner.get(`/v2/library/y/blobs/${other}`)
    t.equal(next.status, 200, 'the joiner\'s connection serves its next request')
    t.equal(sha256(next.body), other)
    t.ok(joiner.open && leader.open, 'no connection was closed')
  })
}

t.test('a joiner arriving before the upstream answered waits for the same fill', async t => {
  const { up, h } = await setup(t)
  const data = randomBytes(1 << 20)
  const d = up.addBlob(data)
  let answer: () => void = () => {}
  const answered = new Promise<void>(resolve => { answer = resolve })
  let asked: () => void = () => {}
  const askedP = new Promise<void>(resolve => { asked = resolve })
  up.fault = async (_req, _res, hit) => {
    if (hit.method === 'GET' && hit.path.endsWith(d)) { asked(); await answered }
    return false
  }
  const a = (await keepAliveClient(h, HUB)).get(`/v2/library/x/blobs/${d}`)
  await askedP
  const b = (await keepAliveClient(h, HUB)).get(`/v2/library/x/blobs/${d}`)
  await h.handledAtLeast(2)
  answer()
  const [ra, rb] = await Promise.all([a, b])
  t.same([ra.status, rb.status], [200, 200])
  t.same([sha256(ra.body), sha256(rb.body)], [d, d])
  t.equal(up.count('GET', `/blobs/${d}`), 1)
})

t.test('an entry evicted while a joiner attaches: the joiner reads the fill, the next request refills', async t => {
  // Room for one 2 MiB blob only: committing the second evicts the first.
  const { up, h, p } = await setup(t, { CACHE_MAX_SIZE: String(3 << 20) })
  const x = randomBytes(2 << 20)
  const y = randomBytes(2 << 20)
  const dx = up.addBlob(x)
  const dy = up.addBlob(y)
  p.hold(dx, 'committed')
  const leader = await keepAliveClient(h, HUB)
  const a = leader.get(`/v2/library/x/blobs/${dx}`)
  const fill = await p.reached
  const ry = await (await keepAliveClient(h, HUB)).get(`/v2/library/y/blobs/${dy}`)
  t.equal(sha256(ry.body), dy)
  t.equal(h.cache.blobs.stat(parseDigest(dx)), undefined, 'x was evicted while its fill is still held')
  const joiner = await keepAliveClient(h, HUB)
  const b = joiner.get(`/v2/library/x/blobs/${dx}`)
  await attachedOrDone(fill, 2, b)
  p.release()
  const [ra, rb] = await Promise.all([a, b])
  t.same([ra.status, rb.status, ra.complete, rb.complete], [200, 200, true, true])
  t.same([sha256(ra.body), sha256(rb.body)], [dx, dx], 'both read the evicted blob whole')
  t.equal(rb.headers['x-cache-status'], 'JOINED')
  const again = await joiner.get(`/v2/library/x/blobs/${dx}`)
  t.equal(again.headers['x-cache-status'], 'MISS', 'after the fill settled, a look-up finds nothing and refills')
  t.equal(sha256(again.body), dx)
  t.equal(up.count('GET', `/blobs/${dx}`), 2)
})

t.test('a corrupt body held before verification: every client attached is aborted, never a clean end', async t => {
  const { up, h, p } = await setup(t)
  const data = randomBytes(1 << 20)
  const d = up.addBlob(data)
  corruptFirstGet(up, d, data => { const bad = Buffer.from(data); bad[bad.length - 1] ^= 0xff; return bad })
  p.hold(d, 'last-byte')
  const a = (await keepAliveClient(h, HUB)).get(`/v2/library/x/blobs/${d}`)
  const fill = await p.reached
  const b = (await keepAliveClient(h, HUB)).get(`/v2/library/x/blobs/${d}`)
  await attachedOrDone(fill, 2, b)
  p.release()
  for (const r of await Promise.all([a, b])) {
    t.equal(r.complete, false, 'aborted')
    t.ok(r.body.length < data.length, 'never the whole (wrong) body')
  }
  t.ok(h.logs.some(l => l.level === 40 && l.abandoned === 'ERR_BLOB_DIGEST_MISMATCH'), 'logged at warn as abandoned, with the reason')
  t.equal(h.cache.blobs.stat(parseDigest(d)), undefined, 'nothing committed')
})

t.test('a request arriving while a failed fill is held gets a new fill and the whole body', async t => {
  const { up, h, p } = await setup(t)
  const data = randomBytes(1 << 20)
  const d = up.addBlob(data)
  corruptFirstGet(up, d, data => randomBytes(data.length))
  p.hold(d, 'failed')
  const a = (await keepAliveClient(h, HUB)).get(`/v2/library/x/blobs/${d}`)
  await p.reached
  const rb = await (await keepAliveClient(h, HUB)).get(`/v2/library/x/blobs/${d}`)
  p.release()
  t.equal((await a).complete, false, 'the failed fill\'s client was aborted')
  t.same([rb.status, rb.complete, sha256(rb.body)], [200, true, d], 'the newcomer got a new fill, whole')
  t.equal(up.count('GET', `/blobs/${d}`), 2)
})

t.test('a fill that fails before any byte reached the client is an error answer with a reason', async t => {
  const { up, h } = await setup(t, { PROXY_READ_TIMEOUT: '300ms' })
  const d = up.addBlob(randomBytes(1000))
  let release: () => void = () => {}
  const never = new Promise<void>(resolve => { release = resolve })
  t.teardown(() => release())
  up.fault = async (_req, res, hit) => {
    if (hit.method !== 'GET' || !hit.path.endsWith(d)) return false
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 1000 })
    res.flushHeaders()
    await never
    return true
  }
  const client = await keepAliveClient(h, HUB)
  const r = await client.get(`/v2/library/x/blobs/${d}`)
  t.equal(r.status, 504, 'a status line, not a closed connection')
  t.match(r.body.toString(), /sent nothing for 300 ms/)
  t.ok(client.open, 'the connection stays usable')
})
