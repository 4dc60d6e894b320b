// The registry door's routing decision (registry-door-path.ts) as a table, then the refusals as a
// client sees them on the registry port: names of any depth, the proxy/ prefix, the docker.io
// alias, containerd's ?ns=, and upstream-looking hosts that are not upstreams.
import t from 'tap'
import { parseDoorRequest, resolveNamespace, UpstreamNames, type DoorRoute } from '../../../src/doors/registry-door-path.js'
import { startDoor } from './fixtures/door-harness.js'

const upstreams = new UpstreamNames(['registry-1.docker.io', 'auth.docker.io', 'index.docker.io', 'docker.io', 'ghcr.io', 'quay.io', 'registry.internal:5443'])
const parse = (url: string, self = 'cache.internal:5000'): DoorRoute => parseDoorRequest(url, { upstreams, isSelf: ns => ns === self })
const where = (url: string): string => {
  const r = parse(url)
  if (r.kind === 'upstream') return `${r.via} ${r.host} ${r.path}`
  if (r.kind === 'refuse') return `refuse ${r.error.code}`
  return 'hosted'
}

t.test('the path prefix names the upstream; the rest is the upstream path', async t => {
  const D = 'sha256:' + 'a'.repeat(64)
  const cases: Array<[string, string]> = [
    ['/v2/docker.io/library/alpine/manifests/3.20', 'prefix registry-1.docker.io /v2/library/alpine/manifests/3.20'],
    ['/v2/docker.io/alpine/manifests/3.20', 'prefix registry-1.docker.io /v2/library/alpine/manifests/3.20'],
    ['/v2/index.docker.io/library/alpine/blobs/' + D, `prefix registry-1.docker.io /v2/library/alpine/blobs/${D}`],
    ['/v2/registry-1.docker.io/bitnami/redis/manifests/7', 'prefix registry-1.docker.io /v2/bitnami/redis/manifests/7'],
    ['/v2/ghcr.io/org/img/manifests/v1', 'prefix ghcr.io /v2/org/img/manifests/v1'],
    ['/v2/ghcr.io/a/b/c/d/e/blobs/' + D, `prefix ghcr.io /v2/a/b/c/d/e/blobs/${D}`],
    ['/v2/ghcr.io/single/manifests/v1', 'prefix ghcr.io /v2/single/manifests/v1'],
    ['/v2/registry.internal:5443/team/app/manifests/1', 'prefix registry.internal:5443 /v2/team/app/manifests/1'],
    ['/v2/proxy/ghcr.io/org/img/manifests/v1', 'proxy-prefix ghcr.io /v2/org/img/manifests/v1'],
    ['/v2/proxy/docker.io/alpine/manifests/3.20', 'proxy-prefix registry-1.docker.io /v2/library/alpine/manifests/3.20'],
    ['/v2/quay.io/org/img/tags/list?n=10&last=a', 'prefix quay.io /v2/org/img/tags/list?n=10&last=a'],
    ['/v2/ghcr.io/org/img/referrers/' + D, `prefix ghcr.io /v2/org/img/referrers/${D}`],
    ['/v2/docker.io/library/alpine/blobs/uploads/', 'prefix registry-1.docker.io /v2/library/alpine/blobs/uploads/'],
  ]
  for (const [url, want] of cases) t.equal(where(url), want, url)
})

t.test('?ns= (containerd mirror mode): that registry, path unchanged', async t => {
  t.equal(where('/v2/library/tiny/manifests/1?ns=docker.io'), 'ns registry-1.docker.io /v2/library/tiny/manifests/1')
  t.equal(where('/v2/library/hello/manifests/1?ns=registry-1.docker.io'), 'ns registry-1.docker.io /v2/library/hello/manifests/1')
  t.equal(where('/v2/alpine/manifests/1?ns=docker.io'), 'ns registry-1.docker.io /v2/alpine/manifests/1', 'containerd normalised the name already: no library/ added')
  t.equal(where('/v2/e2e-org/tiny/manifests/1?ns=ghcr.io'), 'ns ghcr.io /v2/e2e-org/tiny/manifests/1')
  t.equal(where('/v2/org/img/tags/list?n=5&ns=quay.io'), 'ns quay.io /v2/org/img/tags/list?n=5', 'ns is dropped, other parameters stay')
  t.equal(where('/v2/team/app/manifests/1?ns=cache.internal:5000'), 'hosted', 'ns = crossdock itself: a hosted pull')
  t.equal(where('/v2/docker.io/library/x/manifests/1?ns=cache.internal:5000'), 'prefix registry-1.docker.io /v2/library/x/manifests/1', 'ns = crossdock itself, then the path prefix decides')
  t.equal(where('/v2/library/x/manifests/1?ns=unknown.example'), 'refuse NAME_UNKNOWN')
  t.equal(where('/v2/?ns=docker.io'), 'hosted', '/v2/ is always the hosted ping')
})

t.test('everything else is hosted; upstream-looking hosts that are not upstreams are refused', async t => {
  for (const url of ['/v2/', '/v2/_catalog', '/v2/team/base/manifests/1', '/v2/a/b/c/d/blobs/uploads/', '/v2/library/alpine/manifests/3.20', '/v2/proxy/team/manifests/1', '/v2/dockerio/x/manifests/1', '/healthz']) {
    t.equal(where(url), 'hosted', url)
  }
  for (const url of ['/v2/example.com/x/manifests/1', '/v2/localhost/x/manifests/1', '/v2/localhost:5000/x/manifests/1', '/v2/proxy/example.com/x/manifests/1']) {
    t.equal(where(url), 'refuse NAME_UNKNOWN', url)
  }
  t.equal(where('/v2/ghcr.io/Org/Img/manifests/1'), 'refuse NAME_INVALID', 'upstream names follow the OCI grammar')
  t.equal(where('/v2/ghcr.io/org/../x/manifests/1'), 'refuse NAME_INVALID')
  t.equal(where('/v2/ghcr.io/org/img'), 'refuse NAME_UNKNOWN', 'no endpoint after the name')
})

t.test('mount sources: which `from` names an upstream namespace', async t => {
  t.same(resolveNamespace('docker.io/library/alpine', upstreams), { host: 'registry-1.docker.io', repository: 'library/alpine' })
  t.same(resolveNamespace('docker.io/alpine', upstreams), { host: 'registry-1.docker.io', repository: 'library/alpine' })
  t.same(resolveNamespace('proxy/ghcr.io/org/img', upstreams), { host: 'ghcr.io', repository: 'org/img' })
  t.equal(resolveNamespace('team/base', upstreams), undefined)
  t.equal(resolveNamespace('example.com/x', upstreams), undefined)
  t.equal(resolveNamespace('ghcr.io', upstreams), undefined)
})

t.test('on the wire: refusals are OCI errors that say what to do', async t => {
  const d = await startDoor(t)
  const r = await d.reg('GET', '/v2/example.com/org/img/manifests/1')
  t.equal(r.status, 404)
  const err = r.json().errors[0]
  t.equal(err.code, 'NAME_UNKNOWN')
  t.match(err.message, /example\.com is not one of the upstream registries/)
  t.match(err.message, /REGISTRIES/, 'the message names the variable to set')
  t.ok(err.detail.registries.includes('ghcr.io'), 'and lists the upstreams there are')
  const head = await d.reg('HEAD', '/v2/example.com/org/img/manifests/1')
  t.equal(head.status, 404, 'HEAD routes the same way')
  t.equal(head.body.length, 0)
  const ns = await d.reg('HEAD', '/v2/org/img/manifests/1?ns=example.com')
  t.equal(ns.status, 404, 'an unknown ?ns= is refused too')
  t.equal(d.up.hits.length, 0, 'nothing reached any upstream')
  const hosted = await d.reg('GET', '/v2/team/base/manifests/1')
  t.equal(hosted.json().errors[0].code, 'MANIFEST_UNKNOWN', 'the hosted registry answered for a hosted name')
  t.equal(d.up.hits.length, 0, 'hosted names never fall back to an upstream')
})
