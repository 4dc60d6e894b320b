// The hosted registry on three replicas (issue 17), as operators run it: three crossdock processes
// on one bucket of a real Ceph RGW, one shared CA, redis-server, nginx round robin in front of the
// registry doors (test/helpers/cluster.ts).
//   - a chunked push whose POST, PATCHes and PUT nginx hands to different replicas (proved from
//     nginx's $upstream_addr and from each replica's own request log) completes with the right
//     digest, and every replica serves it directly;
//   - real dockerd pushes and pulls through the load balancer and through one replica's proxy door
//     (HOSTED_HOSTNAMES); real ctr pushes and pulls through the load balancer;
//   - a replica SIGKILLed while it receives a PATCH: nothing of the blob is visible, the client
//     resumes the session through the load balancer from the offset the bucket holds and
//     completes it; every blob in the bucket hashes to its key;
//   - a replica stopped with SIGTERM while it serves a pull: the pull completes, new requests go to
//     the others;
//   - radosgw restarted: every replica's /readyz says why it is not ready while it is down, and
//     is ready again after; pulls work again.
// This file's address: 127.0.0.46.
import t from 'tap'
import { createHash } from 'node:crypto'
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { ListObjectsV2Command, GetObjectCommand } from '@aws-sdk/client-s3'
import { requirePrivateNetns, createScope, startDockerd, startContainerd, waitFor, type Crossdock } from '../helpers/e2e/index.js'
import { startCluster, type Cluster } from '../helpers/cluster.js'

const ADDRESS = '127.0.0.46'
const HOSTED = 'registry.internal'
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const ACCEPT = [MANIFEST, 'application/vnd.docker.distribution.manifest.v2+json'].join(', ')
const PART = 8 * 1024 * 1024 // the S3 upload store's part size: what a killed PATCH keeps is whole parts

const sha256 = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

/** Deterministic incompressible-enough bytes, different per seed. */
function bytesOf (seed: number, size: number): Buffer {
  const b = Buffer.alloc(size)
  for (let i = 0; i + 4 <= size; i += 4) b.writeUInt32LE(((i + seed) * 2654435761) >>> 0, i)
  return b
}

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'cluster')
  const cluster: Cluster = await startCluster(scope, { address: ADDRESS, replicas: 3, redis: true, env: { HOSTED_HOSTNAMES: HOSTED } })
  const s = cluster.startTimes
  t.comment(`cluster up in ${s.totalMs} ms (RGW ${s.rgwMs}, redis ${s.redisMs}, 3 replicas ${s.replicasMs}, nginx ${s.lbMs})`)
  const lb = (path: string): string => `${cluster.lb.url}${path}`
  const direct = (c: Crossdock, path: string): string => `http://${c.registryAddress}${path}`
  const label = (i: number): string => `replica ${i + 1}`

  /** POST, then each slice as a PATCH with Content-Range, then PUT ?digest=, all through nginx. */
  async function chunkedPush (repo: string, blob: Buffer, cuts: number[]): Promise<{ status: number, requests: number }> {
    const post = await fetch(lb(`/v2/${repo}/blobs/uploads/`), { method: 'POST' })
    if (post.status !== 202) throw new Error(`POST → ${post.status}`)
    let location = post.headers.get('location') ?? ''
    for (let i = 0; i + 1 < cuts.length; i++) {
      const patch = await fetch(lb(location), {
        method: 'PATCH',
        body: blob.subarray(cuts[i], cuts[i + 1]),
        headers: { 'content-type': 'application/octet-stream', 'content-range': `${cuts[i]}-${cuts[i + 1] - 1}` },
      })
      if (patch.status !== 202) throw new Error(`PATCH ${i} → ${patch.status}: ${await patch.text()}`)
      location = patch.headers.get('location') ?? ''
    }
    const put = await fetch(lb(`${location}${location.includes('?') ? '&' : '?'}digest=${sha256(blob)}`), { method: 'PUT' })
    return { status: put.status, requests: cuts.length + 1 }
  }

  async function pushManifest (repo: string, tag: string, blob: Buffer): Promise<string> {
    const config = Buffer.from(`{"architecture":"amd64","os":"linux","repo":"${repo}"}`)
    const c = await fetch(lb(`/v2/${repo}/blobs/uploads/?digest=${sha256(config)}`), { method: 'POST', body: config })
    if (c.status !== 201) throw new Error(`config → ${c.status}`)
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(blob), size: blob.length }],
    }))
    const m = await fetch(lb(`/v2/${repo}/manifests/${tag}`), { method: 'PUT', body: manifest, headers: { 'content-type': MANIFEST } })
    if (m.status !== 201) throw new Error(`manifest → ${m.status}: ${await m.text()}`)
    return sha256(manifest)
  }

  t.test('a chunked push whose POST, PATCHes and PUT land on three replicas; each replica serves it', async t => {
    const layer = bytesOf(1, 20 * 1024 * 1024 + 123)
    const cuts = [0, 3_000_000, PART + 1, 17_000_000, layer.length]
    const before = cluster.lb.requests().length
    const isUpload = (l: Record<string, unknown>): boolean => typeof l.path === 'string' && l.path.startsWith('/v2/cluster/app/blobs/uploads/')
    const pushed = await chunkedPush('cluster/app', layer, cuts)
    t.equal(pushed.status, 201, 'PUT ?digest= → 201')

    // nginx writes a request's log line after the response went out: wait for the last one.
    const logged = await waitFor('nginx to log the upload\'s requests', () => {
      const after = cluster.lb.requests().slice(before)
      return after.length >= pushed.requests ? after : undefined
    }, { timeoutMs: 5000 })
    const seen = logged.map(r => ({ method: r.method, replica: cluster.replicaAt(r.upstream) }))
    t.equal(seen.length, pushed.requests, 'nginx passed on the POST, 4 PATCHes and the PUT')
    t.same(seen.map(r => r.method), ['POST', 'PATCH', 'PATCH', 'PATCH', 'PATCH', 'PUT'])
    t.equal(new Set(seen.map(r => r.replica)).size, 3, `nginx sent them to all three replicas: ${seen.map(r => `${r.method}→${r.replica + 1}`).join(' ')}`)
    t.not(seen[0].replica, seen[seen.length - 1].replica, 'the PUT landed on another replica than the POST')
    for (let i = 1; i < seen.length; i++) t.not(seen[i].replica, seen[i - 1].replica, `${seen[i].method} #${i} on another replica than the request before`)
    // The replicas' own view: each logged its share of the upload's requests.
    const perReplica = await waitFor('every upload request in a replica log', () => {
      const counts = cluster.requestsPerReplica(l => isUpload(l) && l.door === 'registry')
      return counts.reduce((a, b) => a + b, 0) === pushed.requests ? counts : undefined
    }, { timeoutMs: 5000 })
    t.same(perReplica.map((n, i) => n === seen.filter(r => r.replica === i).length), [true, true, true], `replica logs agree with nginx: ${perReplica.join('/')}`)

    const manifestDigest = await pushManifest('cluster/app', 'v1', layer)
    for (const [i, c] of cluster.replicas.entries()) {
      const m = await fetch(direct(c, '/v2/cluster/app/manifests/v1'), { headers: { accept: ACCEPT } })
      t.equal(m.headers.get('docker-content-digest'), manifestDigest, `${label(i)} resolves the tag`)
      const got = Buffer.from(await (await fetch(direct(c, `/v2/cluster/app/blobs/${sha256(layer)}`))).arrayBuffer())
      t.equal(sha256(got), sha256(layer), `${label(i)} serves the layer, ${got.length} bytes`)
    }
  })

  t.test('real clients: dockerd through the load balancer and through a replica\'s proxy door; ctr through the load balancer', async t => {
    const ctx = scope.path('build')
    mkdirSync(ctx, { recursive: true })
    copyFileSync('/bin/busybox', `${ctx}/busybox`)
    writeFileSync(`${ctx}/data.bin`, bytesOf(2, 3 * 1024 * 1024))
    writeFileSync(`${ctx}/Dockerfile`, 'FROM scratch\nCOPY busybox /bin/busybox\nCOPY data.bin /data.bin\nCMD ["/bin/busybox", "echo", "hello from the cluster"]\n')
    const proxied = cluster.replicas[0]
    const dockerd = await startDockerd(scope, {
      httpsProxy: proxied.proxyUrl,
      trust: [cluster.caCert],
      config: { 'insecure-registries': [cluster.lb.address] },
    })
    const viaLb = `${cluster.lb.address}/team/docker:1`
    await dockerd.dockerOk(['build', '-q', '-t', viaLb, ctx])
    const before = cluster.lb.requests().length
    const pushed = /digest: (sha256:[0-9a-f]{64})/.exec(await dockerd.dockerOk(['push', viaLb]))?.[1] ?? 'none'
    const uploads = cluster.lb.requests().slice(before).filter(r => r.uri.includes('/blobs/uploads/'))
    t.ok(new Set(uploads.map(r => r.upstream)).size >= 2, `docker push's ${uploads.length} upload requests went to ${new Set(uploads.map(r => r.upstream)).size} replicas`)
    await dockerd.dockerOk(['rmi', viaLb])
    await dockerd.dockerOk(['pull', '-q', viaLb])
    t.equal((await dockerd.dockerOk(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', viaLb])).trim(), `${cluster.lb.address}/team/docker@${pushed}`, 'docker pull through nginx: the pushed digest')
    t.equal((await dockerd.dockerOk(['run', '--rm', '--network', 'none', viaLb])).trim(), 'hello from the cluster', 'the pulled image runs')

    // The proxy door of replica 1: HTTPS_PROXY + the shared CA, the hosted name intercepted.
    const viaProxy = `${HOSTED}/team/proxy:1`
    await dockerd.dockerOk(['tag', viaLb, viaProxy])
    t.match(await dockerd.dockerOk(['push', viaProxy]), pushed, 'docker push through replica 1\'s proxy door: same digest')
    const put = await proxied.waitForLog(l => l.method === 'PUT' && l.path === '/v2/team/proxy/manifests/1' && l.host === HOSTED)
    t.equal(put?.status, 201, `replica 1 logged PUT https://${HOSTED}/v2/team/proxy/manifests/1 201`)
    await dockerd.dockerOk(['rmi', viaProxy, viaLb])
    await dockerd.dockerOk(['pull', '-q', viaProxy])
    t.equal((await dockerd.dockerOk(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', viaProxy])).trim(), `${HOSTED}/team/proxy@${pushed}`, 'docker pull through the proxy door')
    for (const [i, c] of cluster.replicas.entries()) {
      const m = await fetch(direct(c, '/v2/team/proxy/manifests/1'), { method: 'HEAD', headers: { accept: ACCEPT } })
      t.equal(m.headers.get('docker-content-digest'), pushed, `${label(i)} has what went through replica 1's proxy door`)
    }

    const ctd = await startContainerd(scope)
    await ctd.ctrOk(['images', 'pull', '--plain-http', viaLb], { timeoutMs: 60_000 })
    const viaCtr = `${cluster.lb.address}/team/ctr:1`
    await ctd.ctrOk(['images', 'tag', viaLb, viaCtr])
    await ctd.ctrOk(['images', 'push', '--plain-http', viaCtr], { timeoutMs: 60_000 })
    for (const [i, c] of cluster.replicas.entries()) {
      const m = await fetch(direct(c, '/v2/team/ctr/manifests/1'), { method: 'HEAD', headers: { accept: ACCEPT } })
      t.equal(m.headers.get('docker-content-digest'), pushed, `${label(i)} serves what ctr pushed through nginx`)
    }
    await ctd.ctrOk(['images', 'rm', viaLb, viaCtr])
    await ctd.ctrOk(['content', 'prune', 'references'])
    const beforePull = cluster.lb.requests().length
    await ctd.ctrOk(['images', 'pull', '--plain-http', viaCtr], { timeoutMs: 60_000 })
    t.match(await ctd.ctrOk(['images', 'ls']), pushed, 'ctr pulled it back through nginx')
    const blobGets = cluster.lb.requests().slice(beforePull).filter(r => r.method === 'GET' && r.uri.startsWith('/v2/team/ctr/blobs/') && r.status === 200)
    t.ok(blobGets.length >= 3, `its config and layers came through nginx again (${blobGets.length} blob GETs, from ${new Set(blobGets.map(r => r.upstream)).size} replicas)`)
  })

  t.test('a replica SIGKILLed while it receives a PATCH: nothing visible; the session resumes through nginx and completes', async t => {
    const blob = bytesOf(3, 40 * 1024 * 1024)
    const digest = sha256(blob)
    const post = await fetch(lb('/v2/cluster/big/blobs/uploads/'), { method: 'POST' })
    t.equal(post.status, 202)
    const location = post.headers.get('location') ?? ''
    const sent = 3 * PART + 1000
    // A PATCH that stops after `sent` bytes and waits: it is in flight on exactly one replica.
    const patch = request(lb(location), { method: 'PATCH', headers: { 'content-type': 'application/octet-stream' } })
    const outcome = new Promise<string>(resolve => {
      patch.once('response', res => { res.resume(); resolve(`status ${res.statusCode ?? 0}`) })
      patch.once('error', err => resolve(`error ${err.message}`))
    })
    patch.write(blob.subarray(0, sent))
    const victim = await waitFor('the replica receiving the PATCH', async () => {
      const inFlight = (await cluster.metricPerReplica('crossdock_http_requests_in_flight', { door: 'registry' })).map(n => n ?? 0)
      const i = inFlight.findIndex(n => n === 1)
      return i >= 0 && inFlight.filter(n => n > 0).length === 1 ? i : undefined
    }, { timeoutMs: 10_000 })
    // Let the bytes reach the bucket as whole parts before the crash (what the client has sent).
    await waitFor('three parts in the bucket', async () => (await listKeys(`uploads/`)).filter(k => k.includes('/parts/')).length >= 3, { timeoutMs: 20_000, intervalMs: 100 })
    await cluster.killReplica(victim)
    t.comment(`killed ${label(victim)} mid-PATCH`)
    t.match(await outcome, /^(status 502|error )/, 'the client sees the PATCH fail (never a 202)')
    patch.destroy()

    for (const [i, c] of cluster.replicas.entries()) {
      if (i === victim) continue
      t.equal((await fetch(direct(c, `/v2/cluster/big/blobs/${digest}`), { method: 'HEAD' })).status, 404, `${label(i)}: the blob is not visible`)
    }
    // The client's retry (a resume, as the spec allows): where is the session? Then the rest.
    const status = await fetch(lb(location))
    t.equal(status.status, 204, 'GET the upload through nginx: 204')
    const end = Number(/^0-(\d+)$/.exec(status.headers.get('range') ?? '')?.[1] ?? -1) + 1
    t.ok(end > 0 && end <= sent && end % PART === 0, `the bucket kept whole parts: resume at ${end} of ${sent} sent`)
    const rest = await fetch(lb(location), { method: 'PATCH', body: blob.subarray(end), headers: { 'content-type': 'application/octet-stream', 'content-range': `${end}-${blob.length - 1}` } })
    t.equal(rest.status, 202, 'PATCH of the rest through nginx (one replica down)')
    const put = await fetch(lb(`${rest.headers.get('location') ?? ''}${(rest.headers.get('location') ?? '').includes('?') ? '&' : '?'}digest=${digest}`), { method: 'PUT' })
    t.equal(put.status, 201, 'PUT ?digest= → 201')

    await cluster.restartReplica(victim)
    for (const [i, c] of cluster.replicas.entries()) {
      const got = Buffer.from(await (await fetch(direct(c, `/v2/cluster/big/blobs/${digest}`))).arrayBuffer())
      t.equal(sha256(got), digest, `${label(i)} serves the whole blob`)
    }
    // Behind crossdock's back: every blob object hashes to its key, no session left behind.
    const blobs = (await listKeys('blobs/')).filter(k => /^blobs\/sha256\/[0-9a-f]{2}\/[0-9a-f]{64}$/.test(k))
    const wrong: string[] = []
    for (const key of blobs) {
      const body = await cluster.s3.send(new GetObjectCommand({ Bucket: cluster.bucket, Key: key }))
      const hash = createHash('sha256')
      for await (const chunk of body.Body as AsyncIterable<Buffer>) hash.update(chunk)
      if (hash.digest('hex') !== key.slice(-64)) wrong.push(key)
    }
    t.ok(blobs.length >= 5, `${blobs.length} blobs in the bucket`)
    t.same(wrong, [], 'every blob object hashes to its key')
    t.same(await listKeys('uploads/'), [], 'no upload session left in the bucket')
  })

  t.test('a replica stopped (SIGTERM) while it serves a pull: that pull completes, nginx sends the rest elsewhere', async t => {
    const layer = bytesOf(1, 20 * 1024 * 1024 + 123)
    const digest = sha256(layer)
    // A pull that reads its first bytes and then waits: in flight on exactly one replica.
    const hash = createHash('sha256')
    let got = 0
    let resume!: () => void
    const done = new Promise<{ status: number, error?: string }>(resolve => {
      request(lb(`/v2/cluster/app/blobs/${digest}`), res => {
        res.on('data', (c: Buffer) => { hash.update(c); got += c.length })
        res.once('data', () => { res.pause(); resume = () => res.resume() })
        res.once('end', () => resolve({ status: res.statusCode ?? 0 }))
        res.once('error', err => resolve({ status: res.statusCode ?? 0, error: err.message }))
      }).once('error', err => resolve({ status: 0, error: err.message })).end()
    })
    const serving = await waitFor('the replica serving the pull', async () => {
      const inFlight = (await cluster.metricPerReplica('crossdock_http_requests_in_flight', { door: 'registry' })).map(n => n ?? 0)
      const i = inFlight.findIndex(n => n === 1)
      return resume !== undefined && i >= 0 && inFlight.filter(n => n > 0).length === 1 ? i : undefined
    }, { timeoutMs: 10_000 })
    const stopped = cluster.stopReplica(serving)
    await waitFor(`${label(serving)} to stop listening`, async () => await fetch(direct(cluster.replicas[serving], '/v2/')).then(() => false, () => true), { timeoutMs: 10_000 })
    const statuses = await Promise.all(Array.from({ length: 6 }, async () => (await fetch(lb('/v2/cluster/app/manifests/v1'), { headers: { accept: ACCEPT } })).status))
    t.same(statuses, [200, 200, 200, 200, 200, 200], 'six pulls through nginx while it drains: all answered by the others')
    resume()
    const r = await done
    t.same(r, { status: 200 }, 'the pull it was serving completes')
    t.equal(`sha256:${hash.digest('hex')}`, digest, `with every byte (${got})`)
    await stopped
    await cluster.restartReplica(serving)
    t.equal((await fetch(direct(cluster.replicas[serving], `/v2/cluster/app/blobs/${digest}`), { method: 'HEAD' })).status, 200, `${label(serving)} is back`)
  })

  t.test('radosgw restarted: /readyz on every replica says why while it is down, ready again after; pulls work again', async t => {
    const path = '/v2/cluster/app/manifests/v1'
    t.equal((await fetch(lb(path), { headers: { accept: ACCEPT } })).status, 200)
    await cluster.stopGateway()
    try {
      for (const [i, c] of cluster.replicas.entries()) {
        const r = await waitFor(`${label(i)} not ready`, async () => {
          const res = await fetch(direct(c, '/readyz'))
          return res.status === 503 ? await res.json() as { reason: string } : undefined
        }, { timeoutMs: 20_000, intervalMs: 200 })
        t.match(r.reason, /^hosted storage: bucket crossdock: ECONNREFUSED/, `${label(i)}: ${r.reason}`)
      }
      const down = await fetch(lb(path), { headers: { accept: ACCEPT } })
      t.equal(down.status, 503, 'a pull through nginx meanwhile: 503')
      t.equal((await down.json() as { errors: Array<{ code: string }> }).errors[0]?.code, 'UNAVAILABLE')
    } finally {
      await cluster.startGateway()
    }
    for (const [i, c] of cluster.replicas.entries()) {
      await waitFor(`${label(i)} ready again`, async () => (await fetch(direct(c, '/readyz'))).status === 200, { timeoutMs: 30_000, intervalMs: 200 })
      t.pass(`${label(i)} ready again`)
    }
    const m = await fetch(lb(path), { headers: { accept: ACCEPT } })
    t.equal(m.status, 200, 'the tag resolves through nginx again')
    const layer = bytesOf(1, 20 * 1024 * 1024 + 123)
    const got = Buffer.from(await (await fetch(lb(`/v2/cluster/app/blobs/${sha256(layer)}`))).arrayBuffer())
    t.equal(sha256(got), sha256(layer), 'the layer is served again')
  })

  t.test('redis-server killed and started again: the hosted registry does not depend on it', async t => {
    await cluster.killRedis()
    const layer = bytesOf(4, 2 * 1024 * 1024)
    t.equal((await chunkedPush('cluster/redisless', layer, [0, 1_000_000, layer.length])).status, 201, 'a chunked push through nginx')
    await cluster.startRedis()
    const got = Buffer.from(await (await fetch(lb(`/v2/cluster/redisless/blobs/${sha256(layer)}`))).arrayBuffer())
    t.equal(sha256(got), sha256(layer), 'pulled back after redis returned')
  })

  async function listKeys (prefix: string): Promise<string[]> {
    const keys: string[] = []
    let token: string | undefined
    do {
      const page = await cluster.s3.send(new ListObjectsV2Command({ Bucket: cluster.bucket, Prefix: prefix, ContinuationToken: token }))
      for (const o of page.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key)
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined
    } while (token !== undefined)
    return keys
  }
}
