// Issue 10 item 1: SIGKILL (no shutdown code runs) of the built crossdock during a cold blob
// download with four clients on it, during a chunked push, and of `crossdock gc` mid-sweep. After a
// restart on the same directories: no partial or wrong blob is ever served, the push completes on
// retry, and `crossdock cache verify` / `crossdock gc --dry-run` find nothing broken.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { join } from 'node:path'
import { requirePrivateNetns, createScope } from '../helpers/e2e/index.js'
import { FakeUpstream, TEST_CA_FILE, sha256 } from '../helpers/fake-upstream.js'
import { CLI } from '../integration/ops/built-cli.js'
import { door, doorStream, readAll, spawnCrossdock, type ChildCrossdock, type DoorAddress } from '../integration/reliability/child-crossdock.js'

const HOST = '127.0.0.27'
const HUB = 'registry-1.docker.io'

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'crash')
  const up = new FakeUpstream()
  await up.start()
  scope.defer('stop fake upstream', async () => { await up.stop() })
  const env = {
    LISTEN_HOST: HOST,
    CA_DIR: scope.path('ca'),
    CACHE_DIR: scope.path('cache'),
    REGISTRY_STORAGE_DIR: scope.path('registry'),
    UPSTREAM_CONNECT_TO: up.connectTo([HUB]),
    UPSTREAM_CA_FILE: TEST_CA_FILE,
  }
  const start = async (): Promise<{ cd: ChildCrossdock, at: DoorAddress }> => {
    const cd = await spawnCrossdock(t, env)
    return { cd, at: { host: HOST, port: cd.registryPort } }
  }
  const octet = (body: Buffer, extra: Record<string, string> = {}): Record<string, string | number> => ({ 'content-type': 'application/octet-stream', 'content-length': body.length, ...extra })

  t.test('kill -9 during a cold blob download with four clients: they are cut, nothing partial survives', async t => {
    const data = randomBytes(8 << 20)
    const d = up.addBlob(data)
    let hold = true
    up.fault = (_req, res, hit) => {
      if (!hold || hit.method !== 'GET' || !hit.path.endsWith(d)) return false
      hold = false
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length })
      res.write(data.subarray(0, 2 << 20)) // and never the rest: the kill comes first
      return true
    }
    const { cd, at } = await start()
    const path = `/v2/proxy/${HUB}/library/crash/blobs/${d}`
    const clients: IncomingMessage[] = []
    for (let i = 0; i < 4; i++) clients.push(await doorStream(at, 'GET', path))
    t.same(clients.map(c => c.headers['x-cache-status']), ['MISS', 'JOINED', 'JOINED', 'JOINED'])
    const reads = clients.map(readAll)
    await new Promise<void>(resolve => clients[3].once('data', () => resolve()))
    await cd.kill()
    for (const r of await Promise.all(reads)) {
      t.equal(r.complete, false, 'cut, never a clean end')
      t.ok(r.body.length < data.length)
    }

    const { cd: again, at: at2 } = await start()
    const tmp = await readdir(join(env.CACHE_DIR, 'tmp'), { recursive: true })
    t.notOk(tmp.some(f => f.includes(d.slice(7))), 'the staging file of the killed run was swept')
    const fresh = await door(at2, 'GET', path)
    t.equal(fresh.headers['x-cache-status'], 'MISS', 'nothing was committed: fetched again')
    t.equal(sha256(fresh.body), d)
    const hit = await door(at2, 'GET', path)
    t.equal(hit.headers['x-cache-status'], 'HIT')
    t.equal(sha256(hit.body), d)
    t.equal(up.count('GET', `/blobs/${d}`), 2)
    await again.kill()
    const verify = await again.cli(['cache', 'verify', '--dry-run'])
    t.equal(verify.code, 0, verify.stdout + verify.stderr)
    t.match(verify.stdout, / 0 bad/)
  })

  t.test('kill -9 during a chunked push: the session resumes after the restart and the blob is whole', async t => {
    const data = randomBytes(3 << 20)
    const d = sha256(data)
    const { cd, at } = await start()
    const open = await door(at, 'POST', '/v2/hosted/crash/blobs/uploads/')
    t.equal(open.status, 202)
    const location = String(open.headers.location)
    const first = data.subarray(0, 1 << 20)
    t.equal((await door(at, 'PATCH', location, { body: first, headers: octet(first, { 'content-range': `0-${first.length - 1}` }) })).status, 202)
    // The second chunk is half sent when crossdock dies.
    const second = data.subarray(1 << 20, 2 << 20)
    const { host, port } = at as { host: string, port: number }
    const http = await import('node:http')
    const req = http.request({ host, port, method: 'PATCH', path: location, headers: octet(second, { 'content-range': `${1 << 20}-${(2 << 20) - 1}` }), agent: false })
    const failed = new Promise<string>(resolve => { req.once('error', err => resolve((err as NodeJS.ErrnoException).code ?? err.message)); req.once('response', res => resolve(`answered ${res.statusCode}`)) })
    // Half of it, then the kill: however much reached the data file, the session must stay usable.
    await new Promise<void>(resolve => req.write(second.subarray(0, 512 << 10), () => resolve()))
    await cd.kill()
    t.match(await failed, /^E/, 'the client saw the connection drop')

    const { cd: again, at: at2 } = await start()
    t.equal((await door(at2, 'HEAD', `/v2/hosted/crash/blobs/${d}`)).status, 404, 'no blob before the push completes')
    const status = await door(at2, 'GET', location)
    t.equal(status.status, 204, 'the session survived')
    const end = Number(/^0-(\d+)$/.exec(String(status.headers.range))?.[1])
    t.ok(end >= (1 << 20) - 1 && end < (2 << 20), `it holds the first chunk and part of the second (Range 0-${end})`)
    const rest = data.subarray(end + 1)
    const put = await door(at2, 'PUT', `${location}${location.includes('?') ? '&' : '?'}digest=${d}`, { body: rest, headers: octet(rest, { 'content-range': `${end + 1}-${data.length - 1}` }) })
    t.equal(put.status, 201, put.body.toString())
    const got = await door(at2, 'GET', `/v2/hosted/crash/blobs/${d}`)
    t.equal(sha256(got.body), d, 'the blob reads back whole and right')
    await again.kill()
  })

  t.test('kill -9 of crossdock gc mid-sweep: referenced content intact, the next gc finishes, dry-run finds nothing broken', async t => {
    const { cd, at } = await start()
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))
    const layer = randomBytes(100 << 10)
    for (const b of [config, layer]) t.equal((await door(at, 'POST', `/v2/hosted/keep/blobs/uploads/?digest=${sha256(b)}`, { body: b, headers: octet(b) })).status, 201)
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(layer), size: layer.length }],
    }))
    t.equal((await door(at, 'PUT', '/v2/hosted/keep/manifests/v1', { body: manifest, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': manifest.length } })).status, 201)
    const garbage = Array.from({ length: 400 }, () => randomBytes(4096))
    for (const g of garbage) await door(at, 'POST', `/v2/hosted/junk/blobs/uploads/?digest=${sha256(g)}`, { body: g, headers: octet(g) })
    await cd.kill()

    // gc with no grace: everything unreferenced goes. Killed after its first removal line.
    const gc = spawn(process.execPath, [CLI, 'gc', '--grace=0s'], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    const killed = new Promise<void>(resolve => gc.once('exit', () => resolve()))
    let out = ''
    await new Promise<void>(resolve => gc.stdout.on('data', (c: Buffer) => { out += c.toString(); if (/removed blob/.test(out)) resolve() }))
    gc.kill('SIGKILL')
    await killed
    t.notMatch(out, /removed \d+ blob\(s\)/, 'killed before the end of its sweep')

    const dry = await cd.cli(['gc', '--dry-run', '--grace=0s'])
    t.equal(dry.code, 0, dry.stderr)
    t.match(dry.stdout, /would remove \d+ blob/, 'a dry run reads the half-swept storage without error')
    const { cd: again, at: at2 } = await start()
    const m = await door(at2, 'GET', '/v2/hosted/keep/manifests/v1', { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
    t.equal(m.status, 200)
    t.equal(sha256(m.body), sha256(manifest))
    for (const b of [config, layer]) t.equal(sha256((await door(at2, 'GET', `/v2/hosted/keep/blobs/${sha256(b)}`)).body), sha256(b), 'referenced blob intact')
    await again.kill()
    const finish = await again.cli(['gc', '--grace=0s'])
    t.equal(finish.code, 0, finish.stderr)
    const after = await again.cli(['gc', '--dry-run', '--grace=0s'])
    t.match(after.stdout, /would remove 0 blob/, 'the next gc finished the job')
  })
}
