// Acceptance test of the Foundation issue: a real dockerd whose only trust is crossdock's CA pulls
// Docker Hub and ghcr.io images through crossdock's MITM proxy door, from a real distribution
// registry standing in for both (UPSTREAM_CONNECT_TO); and a CONNECT to a host crossdock does not
// intercept is a raw tunnel that leaves the far end's TLS untouched.
import t, { type Test } from 'tap'
import { createHash, randomBytes, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { request, get } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import tls from 'node:tls'
import {
  requirePrivateNetns, createScope, startDistribution, seedImage, startCrossdock, startDockerd, startContainerd, skopeo,
  waitFor, FIXTURE,
  type BuiltImage, type Crossdock, type Descriptor, type Distribution, type Dockerd, type LogLine,
} from '../helpers/e2e/index.js'

const HOST = '127.0.0.21' // this file's loopback address (test/e2e/README.md)

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'mitm')
  let upstream!: Distribution
  let hubTiny!: BuiltImage
  let ghcrTiny!: BuiltImage
  let tunnelPort!: number
  let crossdock!: Crossdock
  let dockerd!: Dockerd

  // Called before any t.test: tap then runs the subtests only once this has resolved.
  t.before(async () => {
    upstream = await startDistribution(scope, { host: HOST, name: 'upstream' })
    hubTiny = await seedImage(scope, upstream, 'library/tiny', '1', { seed: 'hub', randomBytes: 512 * 1024 })
    ghcrTiny = await seedImage(scope, upstream, 'e2e-org/tiny', '1', { seed: 'ghcr', randomBytes: 256 * 1024 })
    tunnelPort = await startEchoTlsServer()
    crossdock = await startCrossdock(scope, {
      host: HOST,
      connectTo: {
        'registry-1.docker.io:443': upstream.address,
        'ghcr.io:443': upstream.address,
        'tunnel.test:443': `${HOST}:${tunnelPort}`,
      },
    })
    // Only crossdock's CA: the upstream's test CA is deliberately not trusted by dockerd.
    dockerd = await startDockerd(scope, { httpsProxy: crossdock.proxyUrl, trust: [crossdock.caCert] })
  })

  t.test('the proxy door serves the CA dockerd trusts', async t => {
    const served = await httpGet(`${crossdock.proxyUrl}/ca.crt`)
    t.equal(served.status, 200, 'GET /ca.crt 200')
    t.equal(served.body, readFileSync(crossdock.caCert, 'utf8'), '/ca.crt is $CA_DIR/ca.crt')
    t.ok(new X509Certificate(served.body).ca, 'it is a CA certificate')
  })

  t.test('docker pull of a Docker Hub short name goes through crossdock', async t => {
    await dockerd.dockerOk(['pull', '-q', 'tiny:1'])
    t.equal(await repoDigest(dockerd, 'tiny:1'), `tiny@${hubTiny.digest}`, 'RepoDigest is the seeded manifest')
    await assertArrived(t, 'library/tiny', hubTiny, 'registry-1.docker.io', hubTiny.layers)
    t.equal((await dockerd.dockerOk(['run', '--rm', '--network', 'none', 'tiny:1'])).trim(), 'hello from e2e', 'pulled layers are intact: the image runs')
  })

  t.test('docker pull from ghcr.io goes through crossdock', async t => {
    await dockerd.dockerOk(['pull', '-q', 'ghcr.io/e2e-org/tiny:1'])
    t.equal(await repoDigest(dockerd, 'ghcr.io/e2e-org/tiny:1'), `ghcr.io/e2e-org/tiny@${ghcrTiny.digest}`, 'RepoDigest is the seeded manifest')
    // dockerd already has the busybox layer (shared with tiny:1): it only fetches the random one.
    await assertArrived(t, 'e2e-org/tiny', ghcrTiny, 'ghcr.io', ghcrTiny.layers.slice(1))
  })

  t.test('after docker rmi, both images pull again', async t => {
    await dockerd.dockerOk(['rmi', 'tiny:1', 'ghcr.io/e2e-org/tiny:1'])
    const gone = await dockerd.docker(['image', 'inspect', 'tiny:1'])
    t.not(gone.code, 0, 'tiny:1 is gone from dockerd')
    await dockerd.dockerOk(['pull', '-q', 'tiny:1'])
    await dockerd.dockerOk(['pull', '-q', 'ghcr.io/e2e-org/tiny:1'])
    t.equal(await repoDigest(dockerd, 'tiny:1'), `tiny@${hubTiny.digest}`, 'RepoDigest is the seeded manifest')
    t.equal(await repoDigest(dockerd, 'ghcr.io/e2e-org/tiny:1'), `ghcr.io/e2e-org/tiny@${ghcrTiny.digest}`, 'RepoDigest is the seeded manifest')
    // rmi dropped every layer, so the random layers came through crossdock a second time.
    for (const [host, repo, image] of [['registry-1.docker.io', 'library/tiny', hubTiny], ['ghcr.io', 'e2e-org/tiny', ghcrTiny]] as const) {
      const path = `/v2/${repo}/blobs/${image.layers[1]?.digest ?? ''}`
      const secondServed = await waitFor(`a second GET ${path}`, () => crossdock.logs.filter(l => isRequest(l, host, path) && l.status === 200).length >= 2, { timeoutMs: 5000 }).catch(() => false)
      t.ok(secondServed, `${host}: random layer served by crossdock for both pulls`)
    }
  })

  t.test('skopeo and ctr pull through crossdock too (proxy env and CA on the client)', async t => {
    const viaCrossdock = { httpsProxy: crossdock.proxyUrl, trust: [crossdock.caCert] }
    const raw = await skopeo(scope, ['inspect', '--raw', 'docker://ghcr.io/e2e-org/tiny:1'], viaCrossdock)
    t.equal(raw.code, 0, `skopeo inspect exits 0 ${raw.stderr}`)
    t.equal(`sha256:${createHash('sha256').update(raw.stdout).digest('hex')}`, ghcrTiny.digest, 'skopeo got the manifest bytes the upstream holds')
    // dockerd resolves tags with HEAD; a GET of the tag is skopeo's.
    t.ok(await crossdock.waitForLog(l => isRequest(l, 'ghcr.io', '/v2/e2e-org/tiny/manifests/1') && l.status === 200), 'crossdock logged skopeo\'s GET of the tag')

    const ctd = await startContainerd(scope)
    await ctd.ctrOk(['images', 'pull', 'docker.io/library/tiny:1'], viaCrossdock)
    t.match(await ctd.ctrOk(['images', 'ls']), hubTiny.digest, 'ctr recorded the Docker Hub manifest digest')
    t.ok((await upstream.waitForRequests('HEAD', '/v2/library/tiny/manifests/1')).some(e => /containerd/.test(e.userAgent)), 'the upstream saw containerd\'s HEAD, through crossdock')
  })

  t.test('CONNECT to an intercepted host meets a leaf minted by crossdock', async t => {
    const socket = await connectThrough(crossdock, 'registry-1.docker.io:443')
    const secure = tls.connect({ socket, servername: 'registry-1.docker.io', ca: readFileSync(crossdock.caCert, 'utf8') })
    await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject))
    t.ok(secure.authorized, 'verified against crossdock\'s CA alone')
    // Once only: on Node 20 a second getPeerX509Certificate() on the same socket returns undefined.
    const leaf = secure.getPeerX509Certificate()
    t.equal(leaf?.issuer, new X509Certificate(readFileSync(crossdock.caCert)).subject, 'issued by crossdock\'s CA')
    t.equal(leaf?.checkHost('registry-1.docker.io'), 'registry-1.docker.io', 'for the requested host')
    // write, not end: like the Go clients, keep our side open until the response is complete.
    secure.write('GET /v2/ HTTP/1.1\r\nHost: registry-1.docker.io\r\nConnection: close\r\n\r\n')
    const chunks: Buffer[] = []
    for await (const c of secure) chunks.push(c as Buffer)
    t.match(Buffer.concat(chunks).toString('utf8'), /^HTTP\/1\.1 200 /, 'GET /v2/ through the intercepted tunnel answers 200')
  })

  t.test('CONNECT to a host crossdock does not intercept is a raw tunnel', async t => {
    const socket = await connectThrough(crossdock, 'tunnel.test:443')
    const otherCa = readFileSync(FIXTURE.otherCa, 'utf8')
    const secure = tls.connect({ socket, servername: 'tunnel.test', ca: otherCa })
    await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject))
    t.ok(secure.authorized, 'verified against the unrelated CA alone')
    const peer = secure.getPeerX509Certificate()
    t.equal(peer?.fingerprint256, new X509Certificate(readFileSync(FIXTURE.otherCert)).fingerprint256, 'the far end\'s own certificate')
    t.match(peer?.issuer, /unrelated CA/, 'issued by the unrelated CA')
    t.not(peer?.issuer, new X509Certificate(readFileSync(crossdock.caCert)).subject, 'not by crossdock\'s CA')

    const payload = randomBytes(256 * 1024)
    const echoed = await roundTrip(secure, payload)
    t.ok(echoed.equals(payload), `${payload.length} bytes round-trip unchanged`)
    secure.end()
    await new Promise(resolve => secure.once('close', resolve))
    const line = await waitFor('crossdock\'s tunnel log line', () => crossdock.logs.find(l => l.msg === 'tunnel' && l.host === 'tunnel.test:443'), { timeoutMs: 5000 })
    t.equal(line.cacheStatus, 'TUNNEL', 'logged as a tunnel')
    t.ok(Number(line.bytesUp) > payload.length && Number(line.bytesDown) > payload.length, 'the tunnel line counts the bytes both ways')
  })

  /** What reached the upstream for one pull, and that crossdock logged the same requests. */
  async function assertArrived (t: Test, repo: string, image: BuiltImage, host: string, newLayers: Descriptor[]): Promise<void> {
    const manifests = await upstream.waitForRequests(undefined, new RegExp(`^/v2/${repo}/manifests/(1|${image.digest})$`))
    t.ok(manifests.some(e => e.status === 200), `upstream served the manifest of ${repo}`)
    for (const blob of [image.manifests[0]?.config, ...newLayers]) {
      const path = `/v2/${repo}/blobs/${blob?.digest ?? 'missing'}`
      t.ok((await upstream.waitForRequests('GET', path)).some(e => e.status === 200), `upstream served ${path.slice(0, 60)}…`)
      t.ok(await crossdock.waitForLog(l => isRequest(l, host, path) && l.status === 200), `crossdock logged GET ${host}${path.slice(0, 40)}… 200`)
    }
  }

  async function startEchoTlsServer (): Promise<number> {
    const server = tls.createServer({ cert: readFileSync(FIXTURE.otherCert), key: readFileSync(FIXTURE.otherKey) }, s => s.pipe(s))
    await new Promise<void>(resolve => server.listen(0, HOST, resolve))
    scope.defer('close tunnel target', async () => { await new Promise(resolve => server.close(resolve)) })
    return (server.address() as AddressInfo).port
  }
}

function isRequest (l: LogLine, host: string, path: string): boolean {
  return l.msg === 'request' && l.host === host && l.method === 'GET' && l.path === path
}

async function repoDigest (dockerd: Dockerd, ref: string): Promise<string> {
  return (await dockerd.dockerOk(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', ref])).trim()
}

async function httpGet (url: string): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    get(url, { agent: false }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
    }).once('error', reject)
  })
}

async function connectThrough (crossdock: Crossdock, authority: string): Promise<Socket> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: crossdock.host, port: crossdock.proxyPort, method: 'CONNECT', path: authority, agent: false })
    req.once('connect', (res, socket) => {
      if (res.statusCode === 200) resolve(socket)
      else { socket.destroy(); reject(new Error(`CONNECT ${authority}: ${res.statusCode}`)) }
    })
    req.once('error', reject)
    req.end()
  })
}

async function roundTrip (socket: tls.TLSSocket, payload: Buffer): Promise<Buffer> {
  return await new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let got = 0
    const onData = (c: Buffer): void => {
      chunks.push(c)
      got += c.length
      if (got >= payload.length) { socket.off('data', onData); resolve(Buffer.concat(chunks)) }
    }
    socket.on('data', onData).once('error', reject)
    socket.write(payload)
  })
}
