// One vocabulary (src/oci/): the same request for the same blob gets the same answer from the
// hosted registry and from the pull-through cache. Range is parsed once (oci/range.ts), so the
// status, Content-Range, Content-Length and bytes agree for every spelling, valid or not.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { sha256 } from '../../helpers/fake-upstream.js'
import { startDoor } from './fixtures/door-harness.js'

const RANGES: Array<string | undefined> = [
  undefined,
  'bytes=0-9', 'bytes=10-', 'bytes=-5', 'bytes=95-200', // satisfiable: 206
  'BYTES=0-1', 'Bytes=2-3', 'bytes = 0-1', ' bytes=0 - 1 ', // the unit is case-insensitive, whitespace tolerated
  'bytes=5-2', 'bytes=-', 'bytes=x-1', 'items=0-1', 'bytes=0-1,3-4', // invalid or not for us: 200, whole
  'bytes=100-', 'bytes=100-105', 'bytes=-0', // unsatisfiable: 416
]

t.test('Range on one blob: hosted registry and cache agree, GET and HEAD', async t => {
  const d = await startDoor(t)
  const data = randomBytes(100)
  const img = d.up.addImage('library/same', 'v1', data)
  t.equal(img.layer, sha256(data))
  const cachedPath = `/v2/docker.io/library/same/blobs/${img.layer}`
  const warm = await d.reg('GET', cachedPath)
  t.equal(warm.headers['x-cache-status'], 'MISS')
  const push = await d.reg('POST', `/v2/team/same/blobs/uploads/?digest=${img.layer}`, { body: data, headers: { 'content-type': 'application/octet-stream' } })
  t.equal(push.status, 201, 'the same bytes pushed to a hosted repository')
  const hostedPath = `/v2/team/same/blobs/${img.layer}`

  for (const range of RANGES) {
    for (const method of ['GET', 'HEAD']) {
      const headers: Record<string, string> = range === undefined ? {} : { range }
      const [hosted, cached] = [await d.reg(method, hostedPath, { headers }), await d.reg(method, cachedPath, { headers })]
      const what = `${method} ${range ?? '(no Range)'}`
      t.equal(cached.headers['x-cache-status'], 'HIT', `${what}: served from the cache`)
      t.equal(cached.status, hosted.status, `${what}: status ${hosted.status}`)
      t.equal(cached.headers['content-range'], hosted.headers['content-range'], `${what}: Content-Range ${hosted.headers['content-range']}`)
      if (hosted.status === 416) continue
      t.equal(cached.headers['content-length'], hosted.headers['content-length'], `${what}: Content-Length`)
      t.equal(cached.headers['docker-content-digest'], img.layer, `${what}: digest`)
      if (method === 'GET') t.ok(cached.body.equals(hosted.body), `${what}: the same bytes`)
    }
  }
  const spot = await d.reg('GET', cachedPath, { headers: { range: 'BYTES=0-1' } })
  t.equal(spot.status, 206)
  t.ok(spot.body.equals(data.subarray(0, 2)), 'BYTES=0-1 is the first two bytes')
  t.equal((await d.reg('GET', hostedPath, { headers: { range: 'bytes=5-2' } })).status, 200, 'bytes=5-2 is ignored, not 416')
  t.equal((await d.reg('GET', hostedPath, { headers: { range: 'bytes=100-' } })).headers['content-range'], 'bytes */100')
  t.equal(d.up.count('GET', '/blobs/'), 1, 'one upstream blob GET in all')
})

t.test('names and digests: both doors refuse the same malformed input the same way', async t => {
  const d = await startDoor(t)
  for (const [path, code] of [
    ['/v2/team/UPPER/blobs/sha256:' + 'a'.repeat(64), 'NAME_INVALID'],
    ['/v2/docker.io/library/UPPER/blobs/sha256:' + 'a'.repeat(64), 'NAME_INVALID'],
  ] as const) {
    const r = await d.reg('GET', path)
    t.equal(r.status, 400, path)
    t.equal(r.json().errors[0].code, code, path)
  }
})
