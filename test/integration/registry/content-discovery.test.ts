// Conformance, "Content Discovery" category (spec: end-8a, end-8b) and distribution's catalog:
// lexical order, n/last pagination with Link, n=0, unknown repositories.
import t from 'tap'
import { startRegistry, pushImage } from './fixtures/registry-harness.js'

const h = await startRegistry()
t.teardown(h.close)

const TAGS = ['1.0', '1.1', '2.0', 'alpha', 'beta', 'latest']
const img = await pushImage(h, 'discover/app', 'seed')
await h.req('DELETE', '/v2/discover/app/manifests/seed')
for (const tag of [...TAGS].reverse()) {
  const r = await h.req('PUT', `/v2/discover/app/manifests/${tag}`, { body: img.body, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })
  if (r.status !== 201) throw new Error(`seed: ${r.status}`)
}

t.test('end-8a: every tag, in lexical order', async t => {
  const r = await h.req('GET', '/v2/discover/app/tags/list')
  t.equal(r.status, 200)
  t.same(r.json(), { name: 'discover/app', tags: TAGS })
  t.equal(r.headers.link, undefined)
})

t.test('end-8b: n and last page through the tags with a Link to the next page', async t => {
  const p1 = await h.req('GET', '/v2/discover/app/tags/list?n=2')
  t.same(p1.json().tags, ['1.0', '1.1'])
  t.equal(p1.headers.link, '</v2/discover/app/tags/list?n=2&last=1.1>; rel="next"')
  const next = /<([^>]+)>/.exec(p1.headers.link)?.[1] ?? ''
  const p2 = await h.req('GET', next)
  t.same(p2.json().tags, ['2.0', 'alpha'])
  const p3 = await h.req('GET', '/v2/discover/app/tags/list?n=2&last=alpha')
  t.same(p3.json().tags, ['beta', 'latest'])
  t.equal(p3.headers.link, undefined, 'no Link after the last page')
  const tail = await h.req('GET', '/v2/discover/app/tags/list?last=beta')
  t.same(tail.json().tags, ['latest'], 'last without n')
  const big = await h.req('GET', '/v2/discover/app/tags/list?n=100')
  t.same(big.json().tags, TAGS, 'fewer than n only when there are fewer')
  t.equal(big.headers.link, undefined)
})

t.test('end-8b: n=0 is an empty list without Link', async t => {
  const r = await h.req('GET', '/v2/discover/app/tags/list?n=0')
  t.equal(r.status, 200)
  t.same(r.json().tags, [])
  t.equal(r.headers.link, undefined)
})

t.test('end-8: unknown repository is 404 NAME_UNKNOWN; bad n is refused', async t => {
  const r = await h.req('GET', '/v2/discover/nothing/tags/list')
  t.equal(r.status, 404)
  t.equal(r.json().errors[0].code, 'NAME_UNKNOWN')
  const bad = await h.req('GET', '/v2/discover/app/tags/list?n=-1')
  t.equal(bad.status, 400)
  t.equal(bad.json().errors[0].code, 'PAGINATION_NUMBER_INVALID')
})

t.test('a repository with no tags left lists an empty array', async t => {
  const only = await pushImage(h, 'discover/untagged', 'x')
  await h.req('DELETE', '/v2/discover/untagged/manifests/x')
  const r = await h.req('GET', '/v2/discover/untagged/tags/list')
  t.equal(r.status, 200)
  t.same(r.json(), { name: 'discover/untagged', tags: [] })
  t.equal((await h.req('HEAD', `/v2/discover/untagged/manifests/${only.digest}`)).status, 200)
})

t.test('catalog: repositories of any depth, sorted, paginated', async t => {
  await pushImage(h, 'discover/deep/er/still', 'v1')
  await pushImage(h, 'zz', 'v1')
  const all = await h.req('GET', '/v2/_catalog')
  t.equal(all.status, 200)
  t.same(all.json().repositories, ['discover/app', 'discover/deep/er/still', 'discover/untagged', 'zz'])
  const p1 = await h.req('GET', '/v2/_catalog?n=2')
  t.same(p1.json().repositories, ['discover/app', 'discover/deep/er/still'])
  t.equal(p1.headers.link, '</v2/_catalog?n=2&last=discover%2Fdeep%2Fer%2Fstill>; rel="next"')
  const p2 = await h.req('GET', /<([^>]+)>/.exec(p1.headers.link)?.[1] ?? '')
  t.same(p2.json().repositories, ['discover/untagged', 'zz'])
  t.equal(p2.headers.link, undefined)
})
