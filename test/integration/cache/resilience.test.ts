// Stale-on-error for known tags, the upstream's own error for unknown ones, and the size bound
// (CACHE_MAX_SIZE, pass-through of oversized blobs, restart persistence), through CONNECT + TLS.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FakeUpstream, sha256 } from '../../helpers/fake-upstream.js'
import { startHarness, fetchThrough, type Harness, startWithUpstream } from './harness.js'

const HUB = 'registry-1.docker.io'
const ACCEPT = 'application/vnd.oci.image.manifest.v1+json'

const startBoth = startWithUpstream

const manifestFaults: Array<[string, (res: import('node:http').ServerResponse) => void]> = [
  ['429 Too Many Requests', res => {
    const body = JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'pull rate limit', detail: null }] })
    res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '60', 'ratelimit-remaining': '0;w=21600', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  }],
  ['503 Service Unavailable', res => { res.writeHead(503, { 'content-type': 'text/plain', 'content-length': 4 }); res.end('down') }],
  ['a connection reset', res => { res.socket?.destroy() }],
]

for (const [name, answer] of manifestFaults) {
  t.test(`8. upstream answers ${name}: a known tag is served STALE, an unknown tag gets the upstream's error`, async t => {
    const { up, h } = await startBoth(t)
    const img = up.addImage('library/app', 'v1', 'layer')
    up.addImage('library/app', 'v2', 'layer two')
    const fresh = await fetchThrough(h, HUB, '/v2/library/app/manifests/v1', { headers: { accept: ACCEPT } })
    t.equal(fresh.headers['x-cache-status'], 'MISS')
    up.fault = (req, res, hit) => { if (hit.path.includes('/manifests/')) { answer(res); return true } return false }
    for (const method of ['GET', 'HEAD']) {
      const stale = await fetchThrough(h, HUB, '/v2/library/app/manifests/v1', { method, headers: { accept: ACCEPT } })
      t.equal(stale.status, 200, `${method} known tag`)
      t.equal(stale.headers['x-cache-status'], 'STALE')
      t.equal(stale.headers['x-docker-registry-proxy-cache-upstream-status'], 'STALE')
      t.equal(stale.headers['docker-content-digest'], img.manifest.digest)
      if (method === 'GET') t.equal(sha256(stale.body), img.manifest.digest)
    }
    const unknown = await fetchThrough(h, HUB, '/v2/library/app/manifests/v2', { headers: { accept: ACCEPT } })
    if (name.startsWith('429')) {
      t.equal(unknown.status, 429, 'a 429 stays a 429')
      t.equal(unknown.headers['retry-after'], '60', 'with its headers')
      t.equal(unknown.headers['ratelimit-remaining'], '0;w=21600')
      t.match(JSON.parse(unknown.body.toString()), { errors: [{ code: 'TOOMANYREQUESTS' }] }, 'and its body')
    } else if (name.startsWith('503')) {
      t.equal(unknown.status, 503)
      t.equal(unknown.body.toString(), 'down')
    } else {
      t.equal(unknown.status, 502, 'no answer at all: a 502 saying so')
    }
    t.ok(h.logs.some(l => l.msg?.includes('STALE')), 'the log says it served stale')
  })
}

t.test('8. upstream unreachable or timing out: known tags are STALE', async t => {
  const { up, h } = await startBoth(t, { PROXY_READ_TIMEOUT: '500ms' })
  up.addImage('library/app', 'v1', 'layer')
  await fetchThrough(h, HUB, '/v2/library/app/manifests/v1', { headers: { accept: ACCEPT } })
  let release: () => void = () => {}
  const never = new Promise<void>(resolve => { release = resolve })
  t.teardown(() => release())
  up.fault = async (req, res, hit) => { if (hit.method === 'HEAD') { await never; return true } return false }
  const slow = await fetchThrough(h, HUB, '/v2/library/app/manifests/v1', { headers: { accept: ACCEPT } })
  t.equal(slow.headers['x-cache-status'], 'STALE', 'timeout')
  release()
  await up.stop()
  const gone = await fetchThrough(h, HUB, '/v2/library/app/manifests/v1', { headers: { accept: ACCEPT } })
  t.equal(gone.headers['x-cache-status'], 'STALE', 'connection refused')
  t.equal(gone.status, 200)
  const unknown = await fetchThrough(h, HUB, '/v2/library/app/manifests/nope', { headers: { accept: ACCEPT } })
  t.equal(unknown.status, 502)
})

t.test('9. CACHE_MAX_SIZE: least recently read out first; an oversized blob streams through uncached', async t => {
  const { up, h } = await startBoth(t, { CACHE_MAX_SIZE: '3m' })
  const [a, b, c, d] = [0, 1, 2, 3].map(() => up.addBlob(randomBytes(1 << 20)))
  for (const x of [a, b, c]) await fetchThrough(h, HUB, `/v2/library/l/blobs/${x}`)
  t.equal((await fetchThrough(h, HUB, `/v2/library/l/blobs/${a}`)).headers['x-cache-status'], 'HIT')
  await fetchThrough(h, HUB, `/v2/library/l/blobs/${d}`)
  t.equal((await fetchThrough(h, HUB, `/v2/library/l/blobs/${a}`)).headers['x-cache-status'], 'HIT', 'a was read recently')
  t.equal((await fetchThrough(h, HUB, `/v2/library/l/blobs/${b}`)).headers['x-cache-status'], 'MISS', 'b was least recently read: evicted')
  t.ok(h.cache.stats().usedBytes <= 3 << 20)

  const huge = randomBytes((3 << 20) + 1)
  const hd = up.addBlob(huge)
  const r1 = await fetchThrough(h, HUB, `/v2/library/l/blobs/${hd}`)
  t.equal(r1.status, 200)
  t.equal(sha256(r1.body), hd)
  t.equal(r1.headers['x-cache-status'], 'BYPASS')
  t.ok(h.logs.some(l => l.level === 40 && l.msg === 'blob streamed through uncached' && l.digest === hd), 'a warning in the log')
  await fetchThrough(h, HUB, `/v2/library/l/blobs/${hd}`)
  t.equal(up.count('GET', `/blobs/${hd}`), 2, 'never cached')
})

t.test('9. the index and recency survive a restart', async t => {
  const up = new FakeUpstream()
  await up.start()
  t.teardown(async () => { await up.stop() })
  const dir = await mkdtemp(join(tmpdir(), 'crossdock-restart-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const env = { UPSTREAM_CONNECT_TO: up.connectTo([HUB]) }
  const img = up.addImage('library/keep', 'v1', randomBytes(5000))
  const first = await startHarness(t, env, { dir })
  await fetchThrough(first, HUB, '/v2/library/keep/manifests/v1', { headers: { accept: ACCEPT } })
  await fetchThrough(first, HUB, `/v2/library/keep/blobs/${img.layer}`)
  await first.stop()
  const second = await startHarness(t, env, { dir })
  const gets = up.count('GET', '/')
  const blob = await fetchThrough(second, HUB, `/v2/library/keep/blobs/${img.layer}`)
  t.equal(blob.headers['x-cache-status'], 'HIT')
  const man = await fetchThrough(second, HUB, '/v2/library/keep/manifests/v1', { headers: { accept: ACCEPT } })
  t.equal(man.headers['x-cache-status'], 'HIT')
  up.fault = (req, res) => { res.writeHead(503); res.end(); return true }
  const stale = await fetchThrough(second, HUB, '/v2/library/keep/manifests/v1', { headers: { accept: ACCEPT } })
  t.equal(stale.headers['x-cache-status'], 'STALE', 'the tag record survived the restart too')
  t.equal(up.count('GET', '/'), gets, 'nothing fetched again after the restart')
})
