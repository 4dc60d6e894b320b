// Conformance, "Push" category under stress: resumable uploads across a registry restart, a client
// that dies mid-chunk, concurrent pushes of one blob and one tag, and the purge of stale sessions.
import t from 'tap'
import { request as httpRequest } from 'node:http'
import { readdir, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { startRegistry, pushImage, digestOf, filesUnder, OCI_MANIFEST } from './fixtures/registry-harness.js'

const h = await startRegistry({ env: { UPLOAD_MAX_AGE: '1h' } })
t.teardown(h.close)

t.test('an upload session survives a restart and resumes where it was', async t => {
  const data = Buffer.alloc(3 * 1024 * 1024)
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 256
  const post = await h.req('POST', '/v2/resume/app/blobs/uploads/')
  const first = await h.req('PATCH', post.headers.location, { body: data.subarray(0, 1024 * 1024), headers: { 'content-range': `0-${1024 * 1024 - 1}` } })
  t.equal(first.status, 202)
  await h.restart()
  const status = await h.req('GET', first.headers.location)
  t.equal(status.status, 204, 'the session is known after the restart')
  t.equal(status.headers.range, `0-${1024 * 1024 - 1}`)
  const second = await h.req('PATCH', status.headers.location, { body: data.subarray(1024 * 1024), headers: { 'content-range': `${1024 * 1024}-${data.length - 1}` } })
  t.equal(second.status, 202)
  const put = await h.req('PUT', `${second.headers.location}?digest=${digestOf(data)}`)
  t.equal(put.status, 201, 'the digest covers bytes from before and after the restart')
  t.equal(digestOf((await h.req('GET', put.headers.location)).body), digestOf(data))
})

t.test('a client dying mid-chunk leaves no visible blob, and the session can resume', async t => {
  const data = Buffer.alloc(2 * 1024 * 1024, 9)
  const post = await h.req('POST', '/v2/resume/crash/blobs/uploads/')
  const url = new URL(post.headers.location, h.base)
  // Send half of a declared 2 MiB body, then cut the connection.
  await new Promise<void>(resolve => {
    const req = httpRequest({ host: url.hostname, port: url.port, path: url.pathname, method: 'PATCH', agent: false, headers: { 'content-length': data.length, 'content-range': `0-${data.length - 1}` } })
    req.on('error', () => resolve())
    req.on('close', () => resolve())
    req.write(data.subarray(0, 1024 * 1024), () => setImmediate(() => req.destroy()))
  })
  t.same((await filesUnder(h.dir)).filter(f => f.startsWith('blobs/') && f.includes(digestOf(data).slice(7))), [], 'no blob')
  // The server may still be draining the socket; the session answers once the append settled.
  const status = await h.req('GET', post.headers.location)
  t.equal(status.status, 204)
  const received = Number(status.headers.range.split('-')[1]) + 1
  t.ok(received <= 1024 * 1024, `kept what arrived (${received} bytes)`)
  const rest = await h.req('PATCH', post.headers.location, { body: data.subarray(received), headers: { 'content-range': `${received}-${data.length - 1}` } })
  t.equal(rest.status, 202)
  const put = await h.req('PUT', `${post.headers.location}?digest=${digestOf(data)}`)
  t.equal(put.status, 201)
})

t.test('concurrent pushes of the same blob: all succeed, one copy stored', async t => {
  const data = Buffer.alloc(1024 * 1024, 42)
  const digest = digestOf(data)
  const monolithic = Array.from({ length: 6 }, async () => await h.req('POST', `/v2/race/blob/blobs/uploads/?digest=${digest}`, { body: data }))
  const chunked = Array.from({ length: 4 }, async (_, i) => {
    const post = await h.req('POST', `/v2/race/blob${i}/blobs/uploads/`)
    const patch = await h.req('PATCH', post.headers.location, { body: data, headers: { 'content-range': `0-${data.length - 1}` } })
    return await h.req('PUT', `${patch.headers.location}?digest=${digest}`)
  })
  const replies = await Promise.all([...monolithic, ...chunked])
  t.same(replies.map(r => r.status), replies.map(() => 201))
  const stored = (await filesUnder(h.dir)).filter(f => f.startsWith(`blobs/sha256/${digest.slice(7, 9)}/`))
  t.same(stored, [`blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)} ${data.length}`])
  t.equal(digestOf((await h.req('GET', `/v2/race/blob2/blobs/${digest}`)).body), digest)
})

t.test('concurrent pushes of one tag: every push succeeds, the tag ends on one of them, whole', async t => {
  const pushed = await Promise.all(Array.from({ length: 8 }, async (_, i) => await pushImage(h, 'race/tag', 'latest', { layer: `layer ${i}` })))
  const got = await h.req('GET', '/v2/race/tag/manifests/latest')
  t.equal(got.status, 200)
  t.ok(pushed.some(p => p.digest === got.headers['docker-content-digest']), 'the tag points at one of the pushed manifests')
  t.equal(digestOf(got.body), got.headers['docker-content-digest'])
  for (const p of pushed) t.equal((await h.req('HEAD', `/v2/race/tag/manifests/${p.digest}`)).status, 200)
  const put = await h.req('PUT', '/v2/race/tag/manifests/latest', { body: pushed[0].body, headers: { 'content-type': OCI_MANIFEST } })
  t.equal(put.status, 201)
})

t.test('sessions untouched for UPLOAD_MAX_AGE are purged (at start, then periodically)', async t => {
  const stale = await h.req('POST', '/v2/purge/me/blobs/uploads/')
  await h.req('PATCH', stale.headers.location, { body: 'partial', headers: { 'content-range': '0-6' } })
  const fresh = await h.req('POST', '/v2/purge/me/blobs/uploads/')
  const id = stale.headers['docker-upload-uuid']
  const old = new Date(Date.now() - 2 * 3600 * 1000)
  for (const f of ['', 'data', 'info.json']) await utimes(join(h.dir, 'uploads', id, f), old, old)
  await h.restart()
  t.equal((await h.req('GET', stale.headers.location)).status, 404, 'stale session purged')
  t.equal((await h.req('GET', fresh.headers.location)).status, 204, 'fresh session kept')
  t.notOk((await readdir(join(h.dir, 'uploads'))).includes(id))
})
