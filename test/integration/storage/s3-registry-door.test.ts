// STORAGE=s3 end to end: two crossdock processes (the built CLI) share one bucket on a real Ceph
// RGW. A chunked push whose POST, PATCHes and PUT alternate between them completes and either
// serves it; skopeo pushes to one and pulls from the other; the gateway stopping turns into 503 OCI
// errors and a not-ready /readyz with the reason; a wrong bucket or wrong keys stop
// `crossdock serve` with one line before it listens.
// This file's address: 127.0.0.40.
import t from 'tap'
import { createHash } from 'node:crypto'
import { S3Client, CreateBucketCommand } from '@aws-sdk/client-s3'
import { readdirSync } from 'node:fs'
import { requirePrivateNetns, createScope, startCrossdock, buildImage, skopeo, type Crossdock } from '../../helpers/e2e/index.js'
import { startRgw } from '../../helpers/rgw.js'
import { runCli } from '../ops/built-cli.js'

const ADDRESS = '127.0.0.40'
const BUCKET = 'crossdock-door'

const sha256 = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 's3-door')
  const rgw = await startRgw(ADDRESS, scope.path('rgw'))
  scope.defer('stop rgw', rgw.stop)
  const admin = new S3Client({ region: rgw.region, endpoint: rgw.endpoint, forcePathStyle: true, credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey } })
  scope.defer('close admin client', () => admin.destroy())
  await admin.send(new CreateBucketCommand({ Bucket: BUCKET }))
  const s3Env = { STORAGE: 's3', S3_ENDPOINT: rgw.endpoint, S3_BUCKET: BUCKET, S3_ACCESS_KEY_ID: rgw.accessKeyId, S3_SECRET_ACCESS_KEY: rgw.secretAccessKey, S3_PREFIX: 'door' }

  const replicas: Crossdock[] = []
  for (const name of ['a', 'b']) {
    const c = await startCrossdock(scope, { host: ADDRESS, name, env: s3Env })
    scope.defer(`stop crossdock ${name}`, c.stop)
    scope.attachLog(`crossdock ${name}`, () => c.logs.slice(-20).map(l => JSON.stringify(l)).join('\n'))
    replicas.push(c)
  }
  const [a, b] = replicas
  const url = (c: Crossdock, path: string): string => path.startsWith('http') ? path : `http://${c.registryAddress}${path}`

  t.test('a chunked push alternating between two replicas completes; each serves it', async t => {
    const layer = Buffer.alloc(12 * 1024 * 1024)
    for (let i = 0; i < layer.length; i++) layer[i] = (i * 31 + (i >> 12)) & 0xff
    const post = await fetch(url(a, '/v2/shared/app/blobs/uploads/'), { method: 'POST' })
    t.equal(post.status, 202)
    let location = post.headers.get('location') ?? ''
    const cuts = [0, 3_000_000, 9_000_001, layer.length]
    for (let i = 0; i < 3; i++) {
      const via = i % 2 === 0 ? b : a // POST on a, PATCHes on b, a, b
      const patch = await fetch(url(via, location), {
        method: 'PATCH',
        body: layer.subarray(cuts[i], cuts[i + 1]),
        headers: { 'content-type': 'application/octet-stream', 'content-range': `${cuts[i]}-${cuts[i + 1] - 1}` },
      })
      t.equal(patch.status, 202, `PATCH ${i} on replica ${via === a ? 'a' : 'b'}`)
      t.equal(patch.headers.get('range'), `0-${cuts[i + 1] - 1}`)
      location = patch.headers.get('location') ?? ''
    }
    const put = await fetch(url(a, `${location}${location.includes('?') ? '&' : '?'}digest=${sha256(layer)}`), { method: 'PUT' })
    t.equal(put.status, 201, 'PUT on replica a')
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}')
    t.equal((await fetch(url(b, `/v2/shared/app/blobs/uploads/?digest=${sha256(config)}`), { method: 'POST', body: config })).status, 201)
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: layer.length }],
    }))
    const mput = await fetch(url(b, '/v2/shared/app/manifests/v1'), { method: 'PUT', body: manifest, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })
    t.equal(mput.status, 201)
    for (const [label, c] of [['a', a], ['b', b]] as const) {
      const m = await fetch(url(c, '/v2/shared/app/manifests/v1'), { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
      t.equal(m.headers.get('docker-content-digest'), sha256(manifest), `replica ${label} resolves the tag`)
      const blob = Buffer.from(await (await fetch(url(c, `/v2/shared/app/blobs/${sha256(layer)}`))).arrayBuffer())
      t.equal(sha256(blob), sha256(layer), `replica ${label} serves the layer`)
      const part = await fetch(url(c, `/v2/shared/app/blobs/${sha256(layer)}`), { headers: { range: 'bytes=8388600-8388615' } })
      t.equal(part.status, 206)
      t.same(Buffer.from(await part.arrayBuffer()), layer.subarray(8388600, 8388616), `replica ${label} serves a range across a part boundary`)
    }
    const tags = await (await fetch(url(a, '/v2/shared/app/tags/list'))).json()
    t.same(tags, { name: 'shared/app', tags: ['v1'] })
  })

  t.test('skopeo pushes an image to one replica and copies it back from the other', async t => {
    const image = buildImage(scope.path('image'), '1', { seed: 's3-door', randomBytes: 20 * 1024 * 1024 })
    const push = await skopeo(scope, ['copy', '--dest-tls-verify=false', `oci:${image.layoutDir}:1`, `docker://${a.registryAddress}/skopeo/app:1`], { timeoutMs: 120_000 })
    t.equal(push.code, 0, `skopeo copy in: ${push.stderr.slice(-500)}`)
    const out = scope.path('pulled')
    const pull = await skopeo(scope, ['copy', '--src-tls-verify=false', `docker://${b.registryAddress}/skopeo/app:1`, `dir:${out}`], { timeoutMs: 120_000 })
    t.equal(pull.code, 0, `skopeo copy out: ${pull.stderr.slice(-500)}`)
    const pushed = readdirSync(`${image.layoutDir}/blobs/sha256`).sort()
    const pulled = readdirSync(out).filter(f => /^[0-9a-f]{64}$/.test(f)).sort()
    t.ok(pulled.length >= 3, `${pulled.length} blobs pulled`)
    for (const hex of pulled) t.ok(pushed.includes(hex), `pulled ${hex.slice(0, 12)} is one of the pushed blobs (skopeo checks each digest)`)
  })

  t.test('RGW stopped: 503 with an OCI error of one line, /readyz not ready with the reason; ready again after', async t => {
    t.equal((await fetch(url(a, '/readyz'))).status, 200)
    await rgw.stopGateway()
    let blob: Response
    let ready: Response
    try {
      blob = await fetch(url(a, `/v2/shared/app/manifests/v1`))
      ready = await fetch(url(b, '/readyz'))
    } finally {
      await rgw.startGateway()
    }
    t.equal(blob.status, 503)
    const body = await blob.json() as { errors: Array<{ code: string, message: string }> }
    t.equal(body.errors[0].code, 'UNAVAILABLE')
    t.match(body.errors[0].message, /^object storage unavailable: bucket crossdock-door: ECONNREFUSED/)
    t.notMatch(body.errors[0].message, /\n|at .*\.js/, 'one line, no stack')
    t.equal(ready.status, 503)
    const r = await ready.json() as { reason: string }
    t.match(r.reason, /^hosted storage: bucket crossdock-door: ECONNREFUSED/)
    t.equal((await fetch(url(b, '/readyz'))).status, 200, 'ready again once the gateway answers')
    t.equal((await fetch(url(a, '/v2/shared/app/manifests/v1'))).status, 200)
  })

  t.test('a wrong bucket or wrong keys: `crossdock serve` exits with one line before listening', async t => {
    const base = { ...s3Env, PROXY_PORT: '0', REGISTRY_PORT: '0', LISTEN_HOST: ADDRESS, CA_DIR: scope.path('cli-ca'), CACHE_DIR: scope.path('cli-cache'), REGISTRY_STORAGE_DIR: scope.path('cli-registry') }
    const cases: Array<[string, Record<string, string>, RegExp]> = [
      ['missing bucket', { S3_BUCKET: 'no-such-bucket' }, /S3_BUCKET="no-such-bucket" at http:\/\/127\.0\.0\.40:7480: bucket no-such-bucket: NoSuchBucket \(HTTP 404\)/],
      ['wrong secret', { S3_SECRET_ACCESS_KEY: 'not-the-secret' }, /bucket crossdock-door: AccessDenied \(wrong S3_ACCESS_KEY_ID\/S3_SECRET_ACCESS_KEY, or no permission on the bucket\) \(HTTP 403\)/],
      ['no bucket at all', { S3_BUCKET: '' }, /S3_BUCKET="": expected a bucket name when STORAGE=s3/],
    ]
    for (const [what, env, expected] of cases) {
      const r = await runCli(['serve'], { ...base, ...env }, { timeoutMs: 60_000 })
      t.equal(r.timedOut, false, `${what}: exits`)
      t.equal(r.code, 2, `${what}: exit code 2`)
      const lines = r.stderr.trim().split('\n')
      t.equal(lines.length, 1, `${what}: one line`)
      t.match(lines[0], /^crossdock: configuration error: /)
      t.match(lines[0], expected, what)
      t.notMatch(r.stderr + r.stdout, /not-the-secret|crossdock-test-secret/, `${what}: no secret`)
      t.notMatch(r.stdout, /listening/, `${what}: never listened`)
    }
  })
}
