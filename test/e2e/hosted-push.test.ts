// Acceptance test of the hosted registry (issue 6) with real clients:
//   - dockerd pushes through the proxy door to a HOSTED_HOSTNAMES name (registry.internal) and pulls
//     it back; the bytes are in REGISTRY_STORAGE_DIR;
//   - dockerd pushes to the registry door directly (plain HTTP, insecure-registries) and pulls back;
//   - with HTPASSWD_FILE: skopeo copies in and out with credentials and is refused without them;
//     `docker login` then `docker push` works;
//   - crossdock SIGKILLed in the middle of a chunked upload (driven by hand over HTTP): after a
//     restart on the same directories and port the upload resumes from the Range crossdock reports
//     and completes, and the blob is never visible before it is complete.
//
// registry.internal needs no DNS: dockerd looks the name up (its insecure-registry check) even
// though it sends the request through HTTPS_PROXY; inside the private netns the lookup fails at
// once and dockerd carries on through the proxy, which is what crossdock intercepts.
import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { request, type IncomingHttpHeaders } from 'node:http'
import {
  requirePrivateNetns, createScope, startDistribution, seedImage, buildImage, startCrossdock, startDockerd, skopeo,
  runOk, waitFor, freePort,
  type BuiltImage, type Crossdock, type Dockerd, type LogLine,
} from '../helpers/e2e/index.js'

const HOST = '127.0.0.23' // this file's loopback address (test/e2e/README.md)
const HOSTED = 'registry.internal'
const USER = 'alice'
const PASSWORD = 'hosted-e2e-secret'

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'hosted')
  let tiny!: BuiltImage
  let crossdock!: Crossdock
  let guarded!: Crossdock
  let dockerd!: Dockerd

  t.before(async () => {
    const upstream = await startDistribution(scope, { host: HOST, name: 'upstream' })
    tiny = await seedImage(scope, upstream, 'library/tiny', '1', { seed: 'hosted-tiny', randomBytes: 512 * 1024 })
    crossdock = await startCrossdock(scope, {
      host: HOST,
      // A fixed port: the resume test restarts crossdock and the upload's Location must still work.
      registryPort: await freePort(HOST),
      connectTo: { 'registry-1.docker.io:443': upstream.address },
      env: { HOSTED_HOSTNAMES: HOSTED },
    })
    const htpasswd = scope.path('htpasswd')
    writeFileSync(htpasswd, (await runOk('htpasswd', ['-Bbn', USER, PASSWORD])).trim() + '\n')
    guarded = await startCrossdock(scope, { host: HOST, name: 'crossdock-auth', env: { HTPASSWD_FILE: htpasswd } })
    dockerd = await startDockerd(scope, {
      httpsProxy: crossdock.proxyUrl,
      trust: [crossdock.caCert],
      config: { 'insecure-registries': [crossdock.registryAddress, guarded.registryAddress] },
    })
    // The image to push: tiny:1, pulled from the upstream through the MITM door.
    await dockerd.dockerOk(['pull', '-q', 'tiny:1'])
  })

  t.test(`docker push and pull of ${HOSTED}/team/app:1 through the proxy door`, async t => {
    const ref = `${HOSTED}/team/app:1`
    await dockerd.dockerOk(['tag', 'tiny:1', ref])
    const pushed = pushedDigest(await dockerd.dockerOk(['push', ref]))
    t.match(pushed, /^sha256:[0-9a-f]{64}$/, `docker push reports the digest ${pushed}`)
    const put = await crossdock.waitForLog(l => isRequest(l, 'PUT', '/v2/team/app/manifests/1') && l.host === HOSTED)
    t.equal(put?.status, 201, `crossdock logged PUT https://${HOSTED}/v2/team/app/manifests/1 201 (proxy door)`)

    // Every byte of the image is in REGISTRY_STORAGE_DIR, under the digest it hashes to.
    const manifest = await registryGet(crossdock, '/v2/team/app/manifests/1', { accept: MANIFEST_TYPES })
    t.equal(manifest.status, 200, 'the registry door serves the pushed manifest')
    t.equal(sha256(manifest.body), pushed, 'its bytes hash to the pushed digest')
    t.equal(storedBlob(crossdock, pushed)?.toString('utf8'), manifest.body.toString('utf8'), 'the manifest is in REGISTRY_STORAGE_DIR')
    const m = JSON.parse(manifest.body.toString('utf8')) as { config: { digest: string }, layers: Array<{ digest: string }> }
    t.equal(m.layers.length, tiny.layers.length, `${tiny.layers.length} layers`)
    for (const d of [m.config.digest, ...m.layers.map(l => l.digest)]) {
      const bytes = storedBlob(crossdock, d)
      t.equal(bytes !== undefined ? sha256(bytes) : 'missing', d, `blob ${short(d)} stored, hashing to its digest`)
    }

    await rmiAll()
    await dockerd.dockerOk(['pull', '-q', ref])
    t.equal(await repoDigest(ref), `${HOSTED}/team/app@${pushed}`, 'the pulled RepoDigest is the pushed digest')
    for (const l of m.layers) {
      const line = await crossdock.waitForLog(x => isRequest(x, 'GET', `/v2/team/app/blobs/${l.digest}`) && x.host === HOSTED)
      t.equal(line?.status, 200, `layer ${short(l.digest)} served by the hosted registry through the proxy door`)
    }
    t.equal((await dockerd.dockerOk(['run', '--rm', '--network', 'none', ref])).trim(), 'hello from e2e', 'the pulled image runs')
  })

  t.test('docker push and pull straight to the registry door (insecure-registries)', async t => {
    const ref = `${crossdock.registryAddress}/team/direct:1`
    await dockerd.dockerOk(['tag', `${HOSTED}/team/app:1`, ref])
    const pushed = pushedDigest(await dockerd.dockerOk(['push', ref]))
    const put = await crossdock.waitForLog(l => isRequest(l, 'PUT', '/v2/team/direct/manifests/1') && l.door === 'registry')
    t.equal(put?.status, 201, 'crossdock logged PUT /v2/team/direct/manifests/1 201 on the registry door')
    await rmiAll()
    await dockerd.dockerOk(['pull', '-q', ref])
    t.equal(await repoDigest(ref), `${crossdock.registryAddress}/team/direct@${pushed}`, 'the pulled RepoDigest is the pushed digest')
    const tags = await registryGet(crossdock, '/v2/team/direct/tags/list')
    t.same(JSON.parse(tags.body.toString('utf8')), { name: 'team/direct', tags: ['1'] }, 'tags/list shows the pushed tag')
  })

  t.test('HTPASSWD_FILE: skopeo copies in and out with credentials, and is refused without', async t => {
    const image = buildImage(scope.path('images', 'secure'), '1', { seed: 'hosted-secure', randomBytes: 256 * 1024 })
    const dest = `docker://${guarded.registryAddress}/team/secure:1`
    // An auth file of our own: skopeo must not find credentials anywhere else.
    const authfile = scope.path('skopeo-auth.json')
    writeFileSync(authfile, '{"auths":{}}')
    const copyIn = (creds: string[]): ReturnType<typeof skopeo> => skopeo(scope, ['copy', '--authfile', authfile, '--dest-tls-verify=false', ...creds, `oci:${image.layoutDir}:1`, dest])
    const copyOut = (creds: string[], dir: string): ReturnType<typeof skopeo> => skopeo(scope, ['copy', '--authfile', authfile, '--src-tls-verify=false', ...creds, dest, `dir:${dir}`])

    const anonymousIn = await copyIn([])
    t.not(anonymousIn.code, 0, 'skopeo copy in without credentials fails')
    t.match(anonymousIn.stderr, /unauthorized|401/i, `and says unauthorized: ${lastLine(anonymousIn.stderr)}`)
    const wrongIn = await copyIn(['--dest-creds', `${USER}:not-the-password`])
    t.not(wrongIn.code, 0, 'skopeo copy in with a wrong password fails')
    t.match(wrongIn.stderr, /unauthorized|401/i, `and says unauthorized: ${lastLine(wrongIn.stderr)}`)
    const head = await registryGet(guarded, `/v2/team/secure/manifests/1`, { accept: MANIFEST_TYPES, authorization: basic(USER, PASSWORD) })
    t.equal(head.status, 404, 'nothing was stored by the refused copies')

    const copiedIn = await copyIn(['--dest-creds', `${USER}:${PASSWORD}`])
    t.equal(copiedIn.code, 0, `skopeo copy in with --dest-creds exits 0 ${copiedIn.stderr.trim()}`)
    const stored = await registryGet(guarded, '/v2/team/secure/manifests/1', { accept: MANIFEST_TYPES, authorization: basic(USER, PASSWORD) })
    t.equal(stored.status, 200, 'the manifest is there')
    t.equal(sha256(stored.body), image.digest, 'with the digest skopeo copied (skopeo keeps OCI digests)')

    const refusedDir = scope.path('secure-out-anon')
    const anonymousOut = await copyOut([], refusedDir)
    t.not(anonymousOut.code, 0, 'skopeo copy out without credentials fails')
    t.match(anonymousOut.stderr, /unauthorized|401/i, `and says unauthorized: ${lastLine(anonymousOut.stderr)}`)

    const out = scope.path('secure-out')
    const copiedOut = await copyOut(['--src-creds', `${USER}:${PASSWORD}`], out)
    t.equal(copiedOut.code, 0, `skopeo copy out with --src-creds exits 0 ${copiedOut.stderr.trim()}`)
    t.equal(sha256(readFileSync(`${out}/manifest.json`)), image.digest, 'manifest.json is the pushed manifest')
    const m = image.manifests[0]
    for (const d of [m?.config.digest ?? '', ...image.layers.map(l => l.digest)]) {
      const file = `${out}/${d.slice('sha256:'.length)}`
      t.equal(existsSync(file) ? sha256(readFileSync(file)) : 'missing', d, `blob ${short(d)} copied out intact`)
    }
    t.ok(guarded.logs.some(l => l.msg === 'request' && String(l.path).startsWith('/v2/team/secure/') && l.status === 401), 'crossdock logged refused requests for team/secure as 401')
  })

  t.test('HTPASSWD_FILE: docker push is refused until docker login', async t => {
    const ref = `${guarded.registryAddress}/team/logged:1`
    await dockerd.dockerOk(['pull', '-q', 'tiny:1'])
    await dockerd.dockerOk(['tag', 'tiny:1', ref])
    const refused = await dockerd.docker(['push', ref])
    t.not(refused.code, 0, 'docker push without login fails')
    t.match(refused.stderr, /no basic auth credentials|unauthorized|401/i, `and says why: ${lastLine(refused.stderr)}`)

    const badLogin = await dockerd.docker(['login', '-u', USER, '-p', 'not-the-password', guarded.registryAddress])
    t.not(badLogin.code, 0, 'docker login with a wrong password fails')
    const login = await dockerd.docker(['login', '-u', USER, '-p', PASSWORD, guarded.registryAddress])
    t.equal(login.code, 0, `docker login exits 0 ${login.stderr.trim()}`)
    t.match(login.stdout, /Login Succeeded/, 'Login Succeeded')
    const pushed = pushedDigest(await dockerd.dockerOk(['push', ref]))
    const stored = await registryGet(guarded, '/v2/team/logged/manifests/1', { accept: MANIFEST_TYPES, authorization: basic(USER, PASSWORD) })
    t.equal(stored.status, 200, 'the pushed manifest is there')
    t.equal(sha256(stored.body), pushed, 'with the pushed digest')
  })

  t.test('crossdock killed between two chunks of an upload: it resumes after the restart', async t => {
    const repo = 'team/resume'
    const blob = randomBytes(3 * 1024 * 1024 + 123)
    const digest = sha256(blob)
    const first = 1024 * 1024

    const started = await registryRequest(crossdock, 'POST', `/v2/${repo}/blobs/uploads/`)
    t.equal(started.status, 202, 'POST uploads/ 202')
    const location = header(started.headers, 'location')
    t.match(location, new RegExp(`^/v2/${repo}/blobs/uploads/[^/?]+$`), 'Location of the session')
    const chunk1 = await registryRequest(crossdock, 'PATCH', location, { 'content-type': 'application/octet-stream', 'content-range': `0-${first - 1}` }, blob.subarray(0, first))
    t.equal(chunk1.status, 202, 'PATCH of the first chunk 202')
    t.equal(header(chunk1.headers, 'range'), `0-${first - 1}`, 'Range covers the first chunk')
    t.equal((await registryRequest(crossdock, 'GET', `/v2/${repo}/blobs/${digest}`)).status, 404, 'before the kill, GET of the blob 404')

    await crossdock.kill()
    t.notOk(crossdock.running(), 'crossdock was SIGKILLed')
    await crossdock.start()

    t.equal((await registryRequest(crossdock, 'GET', `/v2/${repo}/blobs/${digest}`)).status, 404, 'after the restart, GET of the blob 404')
    t.equal((await registryRequest(crossdock, 'HEAD', `/v2/${repo}/blobs/${digest}`)).status, 404, 'and HEAD 404')
    const status = await registryRequest(crossdock, 'GET', location)
    t.equal(status.status, 204, 'GET of the upload session 204: it survived the kill')
    t.equal(header(status.headers, 'range'), `0-${first - 1}`, 'Range says the first chunk is there')
    const resumeAt = header(status.headers, 'location')
    const chunk2 = await registryRequest(crossdock, 'PATCH', resumeAt, { 'content-type': 'application/octet-stream', 'content-range': `${first}-${blob.length - 1}` }, blob.subarray(first))
    t.equal(chunk2.status, 202, 'PATCH of the rest 202')
    t.equal(header(chunk2.headers, 'range'), `0-${blob.length - 1}`, 'Range covers the whole blob')
    t.equal((await registryRequest(crossdock, 'GET', `/v2/${repo}/blobs/${digest}`)).status, 404, 'before the PUT, GET of the blob still 404')

    await assertCompletes(t, repo, header(chunk2.headers, 'location'), blob)
  })

  t.test('crossdock killed while a chunk is streaming: the client resumes from the Range it is told', async t => {
    const repo = 'team/resume-mid'
    const blob = randomBytes(4 * 1024 * 1024 + 7)
    const digest = sha256(blob)
    const started = await registryRequest(crossdock, 'POST', `/v2/${repo}/blobs/uploads/`)
    t.equal(started.status, 202, 'POST uploads/ 202')
    const location = header(started.headers, 'location')
    const data = `${crossdock.dirs.storage}/uploads/${location.split('/').pop() ?? ''}/data`

    // One PATCH for the whole blob, of which only the first 1.5 MiB is ever sent.
    const sent = 1.5 * 1024 * 1024
    const req = request({ host: crossdock.host, port: registryPort(crossdock), method: 'PATCH', path: location, agent: false, headers: { 'content-type': 'application/octet-stream', 'content-range': `0-${blob.length - 1}`, 'content-length': blob.length } })
    const failed = new Promise<void>(resolve => { req.once('error', () => resolve()); req.once('response', res => { res.resume(); resolve() }) })
    req.write(blob.subarray(0, sent))
    // The upload's data file (REGISTRY_STORAGE_DIR layout, src/registry/storage/paths.ts) tells
    // when crossdock has written part of the chunk.
    await waitFor('crossdock to write part of the chunk', () => existsSync(data) && statSync(data).size > 0, { timeoutMs: 10_000 })
    await crossdock.kill()
    await failed
    req.destroy()
    await crossdock.start()

    t.equal((await registryRequest(crossdock, 'GET', `/v2/${repo}/blobs/${digest}`)).status, 404, 'after the restart, GET of the blob 404')
    const status = await registryRequest(crossdock, 'GET', location)
    t.equal(status.status, 204, 'GET of the upload session 204')
    const range = /^0-(\d+)$/.exec(header(status.headers, 'range'))
    t.ok(range !== null, `Range is 0-<end>: ${header(status.headers, 'range')}`)
    const next = Number(range?.[1] ?? -1) + 1
    t.ok(next > 0 && next <= sent, `crossdock kept a prefix of what was sent (${next} of ${sent} bytes)`)
    const rest = await registryRequest(crossdock, 'PATCH', header(status.headers, 'location'), { 'content-type': 'application/octet-stream', 'content-range': `${next}-${blob.length - 1}` }, blob.subarray(next))
    t.equal(rest.status, 202, `PATCH from byte ${next} 202`)
    t.equal(header(rest.headers, 'range'), `0-${blob.length - 1}`, 'Range covers the whole blob')
    await assertCompletes(t, repo, header(rest.headers, 'location'), blob)
  })

  /** PUT ?digest= closes the session: 201, then the blob is readable, whole, and the session gone. */
  async function assertCompletes (t: Test, repo: string, location: string, blob: Buffer): Promise<void> {
    const digest = sha256(blob)
    const put = await registryRequest(crossdock, 'PUT', `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`)
    t.equal(put.status, 201, `PUT ?digest= 201 ${put.body.toString('utf8').slice(0, 300)}`)
    t.equal(header(put.headers, 'docker-content-digest'), digest, 'Docker-Content-Digest is the blob\'s')
    const got = await registryRequest(crossdock, 'GET', `/v2/${repo}/blobs/${digest}`)
    t.equal(got.status, 200, 'GET of the blob 200')
    t.equal(got.body.length, blob.length, `${blob.length} bytes`)
    t.equal(sha256(got.body), digest, 'they hash to the digest')
    t.equal((await registryRequest(crossdock, 'GET', location)).status, 404, 'the upload session is gone')
    t.same(readdirSync(`${crossdock.dirs.storage}/uploads`), [], 'no upload data left in REGISTRY_STORAGE_DIR')
  }

  async function rmiAll (): Promise<void> {
    const ids = (await dockerd.dockerOk(['image', 'ls', '-q'])).split('\n').filter(Boolean)
    if (ids.length > 0) await dockerd.dockerOk(['rmi', '-f', ...new Set(ids)])
  }

  async function repoDigest (ref: string): Promise<string> {
    return (await dockerd.dockerOk(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', ref])).trim()
  }
}

const MANIFEST_TYPES = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ')

interface HttpAnswer { status: number, headers: IncomingHttpHeaders, body: Buffer }

function registryPort (c: Crossdock): number {
  return Number(c.registryAddress.split(':').pop())
}

async function registryRequest (c: Crossdock, method: string, path: string, headers: Record<string, string | number> = {}, body?: Buffer): Promise<HttpAnswer> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: c.host, port: registryPort(c), method, path, agent: false, headers: { ...headers, ...(body !== undefined ? { 'content-length': body.length } : {}) } }, res => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk)).once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) })).once('error', reject)
    })
    req.once('error', reject)
    req.end(body)
  })
}

async function registryGet (c: Crossdock, path: string, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  return await registryRequest(c, 'GET', path, headers)
}

/** The bytes of `digest` in the crossdock's REGISTRY_STORAGE_DIR (layout: src/registry/storage/paths.ts). */
function storedBlob (c: Crossdock, digest: string): Buffer | undefined {
  const hex = digest.slice('sha256:'.length)
  const file = `${c.dirs.storage}/blobs/sha256/${hex.slice(0, 2)}/${hex}`
  return existsSync(file) ? readFileSync(file) : undefined
}

function header (headers: IncomingHttpHeaders, name: string): string {
  const v = headers[name]
  return Array.isArray(v) ? v.join(', ') : v ?? ''
}

function isRequest (l: LogLine, method: string, path: string): boolean {
  return l.msg === 'request' && l.method === method && l.path === path
}

function pushedDigest (output: string): string {
  return /digest: (sha256:[0-9a-f]{64})/.exec(output)?.[1] ?? `no digest in: ${output}`
}

function basic (user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
}

function lastLine (s: string): string { return s.trim().split('\n').pop() ?? '' }
function short (digest: string): string { return digest.slice(7, 19) }
function sha256 (b: Buffer): string { return `sha256:${createHash('sha256').update(b).digest('hex')}` }
