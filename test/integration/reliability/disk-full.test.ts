// Issue 10 item 2: CACHE_DIR and REGISTRY_STORAGE_DIR on an 8 MiB tmpfs that fills up while a blob
// is being cached. The clients reading that blob still get all of it, verified; a push fails with an
// OCI error and leaves no blob; once space returns, caching and pushes work again, no restart.
// The built crossdock runs in its own mount namespace (child-crossdock.ts), so nothing is mounted
// in ours.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FakeUpstream, TEST_CA_FILE, sha256 } from '../../helpers/fake-upstream.js'
import { canUnshareMount, door, doorStream, mountsUnder, readAll, spawnCrossdock, waitForLog } from './child-crossdock.js'

const HUB = 'registry-1.docker.io'

if (!canUnshareMount()) t.plan(0, 'needs root and unshare(1): the test mounts a tmpfs in a private mount namespace')

/** Fills the file system holding `path` with one file until the kernel says ENOSPC. */
async function fillDisk (path: string): Promise<number> {
  const fh = await open(path, 'w')
  const chunk = Buffer.alloc(64 << 10, 0x5a)
  let n = 0
  try {
    for (;;) n += (await fh.write(chunk)).bytesWritten
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
  } finally {
    await fh.close()
  }
  return n
}

async function firstBytes (res: IncomingMessage): Promise<Buffer[]> {
  return await new Promise((resolve, reject) => {
    res.once('data', (c: Buffer) => { res.pause(); resolve([c]) })
    res.once('error', reject)
  })
}

async function finish (res: IncomingMessage, head: Buffer[]): Promise<{ body: Buffer, complete: boolean }> {
  const rest = readAll(res)
  res.resume()
  const r = await rest
  return { body: Buffer.concat([...head, r.body]), complete: r.complete }
}

t.test('disk full mid-blob: readers get the whole verified body; pushes fail cleanly; both resume when space returns', async t => {
  const up = new FakeUpstream()
  await up.start()
  t.teardown(async () => { await up.stop() })
  const data = randomBytes(4 << 20)
  const d = up.addBlob(data)
  let release: () => void = () => {}
  const gate = new Promise<void>(resolve => { release = resolve })
  t.teardown(() => release())
  let gated = true
  up.fault = async (_req, res: ServerResponse, hit) => {
    if (!gated || hit.method !== 'GET' || !hit.path.endsWith(d)) return false
    gated = false
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length })
    res.write(data.subarray(0, 1 << 20))
    await gate
    res.end(data.subarray(1 << 20))
    return true
  }

  const base = await mkdtemp(join(tmpdir(), 'crossdock-diskfull-'))
  const disk = join(base, 'disk')
  await mkdir(disk)
  // Never rm -rf through a mount point (there should be none: see the end of the test).
  t.teardown(async () => { if (mountsUnder(base).length === 0) await rm(base, { recursive: true, force: true }) })
  const cd = await spawnCrossdock(t, {
    CA_DIR: join(base, 'ca'),
    CACHE_DIR: join(disk, 'cache'),
    REGISTRY_STORAGE_DIR: join(disk, 'registry'),
    UPSTREAM_CONNECT_TO: up.connectTo([HUB]),
    UPSTREAM_CA_FILE: TEST_CA_FILE,
  }, { tmpfs: { dir: disk, size: '8m' } })
  t.teardown(async () => { await cd.kill() })
  const port = cd.registryPort
  const blobPath = `/v2/proxy/${HUB}/library/app/blobs/${d}`

  // Two readers on one cold download (the second JOINED), both mid-body when the disk fills up.
  const first = await doorStream(port, 'GET', blobPath)
  t.equal(first.headers['x-cache-status'], 'MISS')
  const firstHead = await firstBytes(first)
  const joiner = await doorStream(port, 'GET', blobPath)
  t.equal(joiner.headers['x-cache-status'], 'JOINED')
  const joinerHead = await firstBytes(joiner)
  const filler = cd.insideFs(join(disk, 'filler'))
  t.ok(await fillDisk(filler) > 0, 'the filler took the rest of the tmpfs')
  release()
  const [a, b] = await Promise.all([finish(first, firstHead), finish(joiner, joinerHead)])
  t.ok(a.complete && b.complete, 'both bodies ended cleanly')
  t.equal(sha256(a.body), d, 'the first client got every byte, right ones')
  t.equal(sha256(b.body), d, 'so did the joiner')
  t.ok(await waitForLog(cd.logs, l => l.msg === 'cache disk full mid-blob: streaming the rest through uncached' && l.digest === d), 'the log says why')
  t.ok(await waitForLog(cd.logs, l => l.msg === 'blob verified and served, not cached: the cache disk is full'), 'and that nothing was cached')
  t.equal(up.count('GET', `/blobs/${d}`), 1, 'one upstream GET for both')

  // Still full: the next pull streams through uncached, whole.
  const again = await door(port, 'GET', blobPath)
  t.equal(again.status, 200)
  t.equal(sha256(again.body), d)
  t.equal(again.headers['x-cache-status'], 'BYPASS')
  t.equal(up.count('GET', `/blobs/${d}`), 2, 'it was not cached')

  // Pushes on a full disk (the pass-through freed its staging file: fill up again). A refused push
  // is an OCI error saying why, and leaves no blob.
  const filler2 = cd.insideFs(join(disk, 'filler2'))
  await fillDisk(filler2)
  const octet = (body: Buffer): Record<string, string | number> => ({ 'content-type': 'application/octet-stream', 'content-length': body.length })
  const small = randomBytes(16 << 10)
  const sd = sha256(small)
  const mono = await door(port, 'POST', `/v2/hosted/app/blobs/uploads/?digest=${sd}`, { body: small, headers: octet(small) })
  t.equal(mono.status, 507, 'monolithic push refused: 507 Insufficient Storage')
  t.match(JSON.parse(mono.body.toString()), { errors: [{ code: 'UNAVAILABLE', message: 'registry storage is full', detail: { reason: 'ENOSPC' } }] }, 'with an OCI error body that says why')
  const session = await door(port, 'POST', '/v2/hosted/app/blobs/uploads/')
  t.equal(session.status, 507, 'a chunked push cannot start either')
  t.match(JSON.parse(session.body.toString()), { errors: [{ message: 'registry storage is full' }] })
  // A big body still arriving when its write fails: the rest is drained, so the client reads the 507
  // instead of a reset.
  const pushed = randomBytes(1536 << 10)
  const pd = sha256(pushed)
  const big = await door(port, 'POST', `/v2/hosted/app/blobs/uploads/?digest=${pd}`, { body: pushed, headers: octet(pushed) })
  t.equal(big.status, 507, 'a big push is refused with 507, not a reset')
  t.match(JSON.parse(big.body.toString()), { errors: [{ message: 'registry storage is full' }] })
  for (const digest of [sd, pd]) t.equal((await door(port, 'HEAD', `/v2/hosted/app/blobs/${digest}`)).status, 404, 'no half-written blob is visible')

  // Space returns: no restart, caching and pushes resume.
  await rm(filler)
  await rm(filler2)
  let status = ''
  let refetch = 0
  for (let i = 0; i < 20 && status !== 'MISS'; i++) {
    // The free-space figure is refreshed after a bypass: at most a few more pass through.
    const r = await door(port, 'GET', blobPath)
    t.equal(sha256(r.body), d)
    status = String(r.headers['x-cache-status'])
    refetch++
  }
  t.equal(status, 'MISS', 'cached again')
  const hit = await door(port, 'GET', blobPath)
  t.equal(hit.headers['x-cache-status'], 'HIT')
  t.equal(sha256(hit.body), d)
  t.equal(up.count('GET', `/blobs/${d}`), 2 + refetch, 'the hit did not go upstream')

  const fresh = await door(port, 'POST', `/v2/hosted/app/blobs/uploads/?digest=${pd}`, { body: pushed, headers: octet(pushed) })
  t.equal(fresh.status, 201, `a push succeeds once there is room (${fresh.body.toString()})`)
  const got = await door(port, 'GET', `/v2/hosted/app/blobs/${pd}`)
  t.equal(got.status, 200)
  t.equal(sha256(got.body), pd, 'the pushed blob reads back whole')

  const verify = await cd.cli(['cache', 'verify', '--dry-run'], { CACHE_DIR: cd.insideFs(join(disk, 'cache')) })
  t.equal(verify.code, 0, verify.stdout + verify.stderr)
  t.match(verify.stdout, /verified 1 files .*: 1 ok, 0 bad/)
  const gc = await cd.cli(['gc', '--dry-run'], { REGISTRY_STORAGE_DIR: cd.insideFs(join(disk, 'registry')) })
  t.equal(gc.code, 0, gc.stderr)
  t.match(gc.stdout, /would remove 0 blob/, 'gc finds nothing to collect')
  await cd.kill()
  // The tmpfs lived in the child's namespace only: it never showed up in ours, and went with it.
  t.same(mountsUnder(base), [], 'no mount leaked into the test\'s namespace')
})
