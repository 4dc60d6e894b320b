// Pulls from the registry port with no CA and no proxy: the prefix forms and containerd's ?ns= reach
// the fake upstream once and are cached; the MITM door and the registry port share one cache (a
// blob fetched through one is a HIT through the other); pushes into upstream namespaces are 405;
// /v2/ answers without the upstream; tags/list passes through; our client credentials stay ours.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import bcrypt from 'bcryptjs'
import { sha256 } from '../../helpers/fake-upstream.js'
import { startDoor, HUB, ACCEPT, upstreamBlobGets, type DoorHarness, type Reply } from './fixtures/door-harness.js'

/** What `docker pull <prefix>/<repo>:<tag>` asks of the registry port, with each X-Cache-Status. */
async function pull (d: DoorHarness, base: string, tag: string, query = ''): Promise<string[]> {
  const m = await d.reg('GET', `${base}/manifests/${tag}${query}`, { headers: { accept: ACCEPT } })
  if (m.status !== 200) throw new Error(`manifest: ${m.status} ${m.body.toString()}`)
  const seen = [String(m.headers['x-cache-status'])]
  const manifest = m.json()
  for (const digest of [manifest.config.digest, ...manifest.layers.map((l: { digest: string }) => l.digest)]) {
    const b = await d.reg('GET', `${base}/blobs/${digest}${query}`)
    if (b.status !== 200 || sha256(b.body) !== digest) throw new Error(`blob ${digest}: ${b.status}`)
    seen.push(String(b.headers['x-cache-status']))
  }
  return seen
}

t.test('docker.io/… on the registry port: one upstream fetch, then hits; every spelling shares the entry', async t => {
  const d = await startDoor(t)
  const img = d.up.addImage('library/alpine', '3.20', randomBytes(200_000))
  t.same(await pull(d, '/v2/docker.io/library/alpine', '3.20'), ['MISS', 'MISS', 'MISS'])
  t.same(d.up.hits.map(h => `${h.method} ${h.host} ${h.path}`), [
    `HEAD ${HUB} /v2/library/alpine/manifests/3.20`,
    `GET ${HUB} /v2/library/alpine/manifests/${img.manifest.digest}`,
    `GET ${HUB} /v2/library/alpine/blobs/${img.config}`,
    `GET ${HUB} /v2/library/alpine/blobs/${img.layer}`,
  ], 'docker.io became registry-1.docker.io, the prefix was stripped')

  const before = d.up.hits.length
  for (const [base, query] of [['/v2/docker.io/alpine', ''], ['/v2/proxy/docker.io/library/alpine', ''], ['/v2/index.docker.io/library/alpine', ''], ['/v2/library/alpine', '?ns=docker.io']]) {
    t.same(await pull(d, base, '3.20', query), ['HIT', 'HIT', 'HIT'], `${base}${query}`)
  }
  const later = d.up.hits.slice(before)
  t.equal(upstreamBlobGets(d.up), 2, 'no further blob GETs')
  t.ok(later.every(h => h.method === 'HEAD' && h.path === '/v2/library/alpine/manifests/3.20'), 'only the tag was checked again')

  const head = await d.reg('HEAD', `/v2/docker.io/library/alpine/blobs/${img.layer}`)
  t.equal(head.status, 200)
  t.equal(head.headers['content-length'], '200000', 'HEAD of a cached blob: its size')
  t.equal(head.headers['x-cache-status'], 'HIT')
})

t.test('other upstreams by prefix and by ?ns=, names of any depth', async t => {
  const d = await startDoor(t)
  const ghcr = d.up.addImage('org/team/sub/img', 'v1', randomBytes(50_000))
  t.same(await pull(d, '/v2/ghcr.io/org/team/sub/img', 'v1'), ['MISS', 'MISS', 'MISS'])
  t.ok(d.up.hits.every(h => h.host === 'ghcr.io'), 'every request went to ghcr.io')
  t.same(await pull(d, '/v2/org/team/sub/img', 'v1', '?ns=ghcr.io'), ['HIT', 'HIT', 'HIT'], 'containerd\'s spelling hits the same entries')
  t.equal(upstreamBlobGets(d.up), 2)
  const digestRef = await d.reg('GET', `/v2/proxy/ghcr.io/org/team/sub/img/manifests/${ghcr.manifest.digest}`, { headers: { accept: ACCEPT } })
  t.equal(digestRef.headers['x-cache-status'], 'HIT', 'manifest by digest through the seed project\'s spelling')
  t.equal(d.up.count('GET', '/manifests/'), 1, 'the manifest was fetched once')

  // distribution-spec main branch, "Registry Proxying": a request scoped by ns says so.
  const scoped = await d.reg('GET', `/v2/org/team/sub/img/blobs/${ghcr.layer}?ns=ghcr.io`)
  t.equal(scoped.headers['oci-namespace'], 'ghcr.io', 'OCI-Namespace echoes ?ns=')
  const missing = await d.reg('GET', `/v2/org/team/sub/img/manifests/nope?ns=ghcr.io`, { headers: { accept: ACCEPT } })
  t.equal(missing.status, 404)
  t.equal(missing.headers['oci-namespace'], 'ghcr.io', 'on an error answer too')
  const prefixed = await d.reg('GET', `/v2/ghcr.io/org/team/sub/img/blobs/${ghcr.layer}`)
  t.equal(prefixed.headers['oci-namespace'], undefined, 'not for the path-prefix form (no ns was given)')
})

t.test('one cache for every door: MITM then registry port, and the reverse', async t => {
  const d = await startDoor(t)
  const a = d.up.addImage('library/busybox', '1', randomBytes(100_000))
  const viaMitm = await d.mitm(HUB, 'GET', `/v2/library/busybox/blobs/${a.layer}`)
  t.equal(viaMitm.headers['x-cache-status'], 'MISS', 'first fetched through the proxy door')
  const viaReg = await d.reg('GET', `/v2/docker.io/library/busybox/blobs/${a.layer}`)
  t.equal(viaReg.status, 200)
  t.equal(viaReg.headers['x-cache-status'], 'HIT', 'a HIT through the registry port')
  t.equal(sha256(viaReg.body), a.layer)

  const b = d.up.addImage('org/tool', '2', randomBytes(100_000))
  const first = await d.reg('GET', `/v2/org/tool/blobs/${b.layer}?ns=ghcr.io`)
  t.equal(first.headers['x-cache-status'], 'MISS', 'first fetched through the registry port (?ns=)')
  const second = await d.mitm('ghcr.io', 'GET', `/v2/org/tool/blobs/${b.layer}`)
  t.equal(second.headers['x-cache-status'], 'HIT', 'a HIT through the proxy door')
  t.equal(sha256(second.body), b.layer)
  t.equal(d.up.count('GET', `/blobs/${a.layer}`) + d.up.count('GET', `/blobs/${b.layer}`), 2, 'each blob left the upstream once')
})

t.test('concurrent cold misses of one blob through both doors: both served, one cache entry', async t => {
  const d = await startDoor(t)
  const img = d.up.addImage('library/big', '1', randomBytes(1_000_000))
  // Hold blob answers so both doors' leaders are waiting on the upstream at once: each door has
  // its own pull-through (and upstream client) over the one cache.
  d.up.fault = async (_req, _res, hit) => { if (hit.path.includes('/blobs/')) await new Promise(resolve => setTimeout(resolve, 300)); return false }
  const [viaMitm, viaReg] = await Promise.all([
    d.mitm(HUB, 'GET', `/v2/library/big/blobs/${img.layer}`),
    d.reg('GET', `/v2/docker.io/library/big/blobs/${img.layer}`),
  ])
  t.equal(viaMitm.status, 200, 'proxy door: 200')
  t.equal(viaReg.status, 200, 'registry door: 200 (not "a fill is already in flight")')
  t.equal(sha256(viaMitm.body), img.layer)
  t.equal(sha256(viaReg.body), img.layer)
  t.ok(upstreamBlobGets(d.up) <= 2, 'at most one upstream GET per door')
  const again = await d.reg('GET', `/v2/docker.io/library/big/blobs/${img.layer}`)
  t.equal(again.headers['x-cache-status'], 'HIT', 'one committed entry serves both afterwards')
})

t.test('pushes into an upstream namespace: 405 UNSUPPORTED naming where to push', async t => {
  const d = await startDoor(t)
  const digest = 'sha256:' + 'b'.repeat(64)
  const tries: Array<[string, string, string | undefined]> = [
    ['POST', '/v2/docker.io/library/alpine/blobs/uploads/', undefined],
    ['POST', `/v2/ghcr.io/org/img/blobs/uploads/?mount=${digest}&from=team/base`, undefined],
    ['PUT', '/v2/docker.io/library/alpine/manifests/3.20', '{}'],
    ['DELETE', `/v2/proxy/ghcr.io/org/img/manifests/${digest}`, undefined],
    ['PATCH', '/v2/org/img/blobs/uploads/123?ns=ghcr.io', 'abc'],
  ]
  for (const [method, path, body] of tries) {
    const r: Reply = await d.reg(method, path, { body })
    t.equal(r.status, 405, `${method} ${path}`)
    const err = r.json().errors[0]
    t.equal(err.code, 'UNSUPPORTED')
    t.match(err.message, /push to a hosted repository name instead/, 'says where to push')
  }
  t.equal(d.up.hits.length, 0, 'no write reached the upstream')
  const hosted = await d.reg('POST', '/v2/team/base/blobs/uploads/')
  t.equal(hosted.status, 202, 'a hosted name still takes pushes')
})

t.test('/v2/ answers 200 with the upstream down; an uncached pull says why it failed', async t => {
  const d = await startDoor(t)
  await d.up.stop()
  for (const method of ['GET', 'HEAD']) {
    const r = await d.reg(method, '/v2/')
    t.equal(r.status, 200, `${method} /v2/`)
    t.equal(r.headers['docker-distribution-api-version'], 'registry/2.0')
  }
  const r = await d.reg('GET', '/v2/docker.io/library/alpine/manifests/3.20', { headers: { accept: ACCEPT } })
  t.equal(r.status, 502, 'the upstream is down: 502')
  t.match(r.body.toString(), /upstream registry-1\.docker\.io: connection refused/)
})

t.test('tags/list of an upstream namespace passes through to the upstream', async t => {
  const d = await startDoor(t)
  d.up.fault = (req, res, hit) => {
    if (!hit.path.startsWith('/v2/library/alpine/tags/list')) return false
    d.up.send(res, 200, 'application/json', Buffer.from(JSON.stringify({ name: 'library/alpine', tags: ['3.19', '3.20'] })), req.method)
    return true
  }
  const r = await d.reg('GET', '/v2/docker.io/alpine/tags/list?n=2')
  t.equal(r.status, 200)
  t.same(r.json(), { name: 'library/alpine', tags: ['3.19', '3.20'] })
  t.same(d.up.hits.map(h => h.path), ['/v2/library/alpine/tags/list?n=2'], 'path as the upstream spells it, query kept')
  const catalog = await d.reg('GET', '/v2/_catalog')
  t.same(catalog.json(), { repositories: [] }, '_catalog lists hosted repositories only')
})

t.test('with HTPASSWD_FILE: anonymous pulls are challenged, and our credentials never reach the upstream', async t => {
  const d0 = await startDoor(t) // only for a temp dir to hold the file
  const file = join(d0.app.dir, 'htpasswd')
  await writeFile(file, `alice:${bcrypt.hashSync('s3cret', 4)}\n`)
  const d = await startDoor(t, { HTPASSWD_FILE: file })
  const img = d.up.addImage('library/alpine', '3.20', randomBytes(1000))
  const anon = await d.reg('GET', `/v2/docker.io/library/alpine/blobs/${img.layer}`)
  t.equal(anon.status, 401, 'anonymous: 401')
  t.match(anon.headers['www-authenticate'], /^Basic realm="crossdock"/)
  t.equal(d.up.hits.length, 0, 'refused before any upstream request')
  const basic = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`
  const ok = await d.reg('GET', `/v2/docker.io/library/alpine/blobs/${img.layer}`, { headers: { authorization: basic } })
  t.equal(ok.status, 200)
  const tags = await d.reg('GET', '/v2/docker.io/library/alpine/tags/list', { headers: { authorization: basic } })
  t.equal(tags.status, 404, 'passed through (the fake has no tags/list)')
  t.equal(d.up.hits.length, 2)
  t.ok(d.up.hits.every(h => h.headers.authorization === undefined), 'no Authorization reached the upstream')
})
