/**
 * A bounded HTTP fuzz of the started app (both doors) with generated requests: hostile repository
 * names and references, path traversals in every spelling, Range/Content-Range/Content-Type
 * headers, manifest bodies of any shape, absolute-URI and odd targets on the proxy port, and odd
 * CONNECT authorities. Asserted: the registry door answers only 2xx or 4xx, every 4xx with the
 * spec's JSON error body; the proxy door only its own 2xx/4xx; never a 5xx; the app answers
 * throughout; RSS stays bounded; and no file appears outside the app's directories.
 *
 * Every dial goes to a fake upstream on loopback (UPSTREAM_CONNECT_TO with an empty host and port
 * matches any name), so pull-through namespaces and tunnels are exercised without leaving 127/8.
 */
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { mkdtemp, mkdir, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative, sep } from 'node:path'
import fc from 'fast-check'
import { OCI_ERRORS } from '../../../src/errors.js'
import { startApp } from '../../helpers/start-app.js'
import { FakeUpstream } from '../../helpers/fake-upstream.js'
import { FUZZ_SEED, TRAVERSAL_PIECES, hostile, validName, digestLike, validTag } from '../../unit/fuzz/fuzz-settings.js'

// Eight at a time: concurrency is part of the input (uploads and manifests racing on one name).
const CONC = 8
const REGISTRY_CASES = 400
const DIRECTOR_CASES = 150
const CONNECT_CASES = 150
// Generous: the whole fuzz holds a few requests at a time; a leak per request would show in MiB.
const RSS_GROWTH_MAX = 256 * 1024 * 1024
const MARKER = 'pwned-by-fuzz'
t.comment(`fuzz seed ${FUZZ_SEED}: ${REGISTRY_CASES} registry-door, ${DIRECTOR_CASES} proxy-port and ${CONNECT_CASES} CONNECT requests`)

const sandbox = await mkdtemp(join(tmpdir(), 'crossdock-fuzz-'))
const roots = join(sandbox, 'roots')
await mkdir(join(sandbox, 'outside'), { recursive: true })
await writeFile(join(sandbox, 'outside', 'canary'), 'untouched')
const up = new FakeUpstream()
await up.start()
const app = await startApp({
  HOSTED_HOSTNAMES: 'registry.internal',
  REGISTRIES: 'ghcr.io',
  UPSTREAM_CONNECT_TO: `::127.0.0.1:${up.port}`,
  CACHE_MIN_FREE: '0',
  LOG_LEVEL: 'info',
}, { dir: roots })
t.teardown(async () => {
  await app.stop()
  await up.stop()
  await rm(sandbox, { recursive: true, force: true })
})
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
t.teardown(() => agent.destroy())

interface Answer { status: number, headers: http.IncomingHttpHeaders, body: Buffer }

/** Percent-encodes only what an HTTP request line cannot carry, so `..`, `/` and `%2e` arrive as generated. */
const onTheWire = (s: string): string => s.replace(/[^A-Za-z0-9._~\-/%:?&=+@!$'()*,;[\]]/gu, c => encodeURIComponent(c))

async function send (port: number, method: string, target: string, headers: Record<string, string> = {}, body?: Buffer): Promise<Answer> {
  return await new Promise((resolve, reject) => {
    // An explicit length: Node's client sends a DELETE/OPTIONS body with neither Content-Length nor
    // chunked framing, and the server would read it as the next request.
    const framing = body === undefined ? {} : { 'content-length': String(body.length) }
    const req = http.request({ host: '127.0.0.1', port, method, path: target, headers: { ...headers, ...framing }, agent }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** Why a registry-door answer is wrong, or undefined when it is right. */
function registryAnswerProblem (method: string, a: Answer): string | undefined {
  if (!(a.status >= 200 && a.status < 300) && !(a.status >= 400 && a.status < 500)) return `status ${a.status} ${a.body.toString('utf8').slice(0, 100)}`
  if (a.status < 400 || method === 'HEAD') return undefined
  if (!String(a.headers['content-type']).startsWith('application/json')) return `content-type ${String(a.headers['content-type'])}`
  let json: any
  try { json = JSON.parse(a.body.toString('utf8')) } catch { return `body is not JSON: ${a.body.toString('utf8').slice(0, 80)}` }
  const codes = Array.isArray(json?.errors) ? json.errors.map((e: any) => e?.code) : []
  if (codes.length === 0 || !codes.every((c: unknown) => typeof c === 'string' && c in OCI_ERRORS)) return `not an OCI error body: ${a.body.toString('utf8').slice(0, 120)}`
  return undefined
}

const name = fc.oneof(validName, hostile, fc.constantFrom('docker.io/library/alpine', 'ghcr.io/a/b', 'proxy/ghcr.io/x', 'registry-1.docker.io/x', 'evil.example/x', 'localhost:5000/x', '_catalog', `../${MARKER}`, `a/../../../${MARKER}`))
const reference = fc.oneof(digestLike, validTag, hostile, fc.constant(`..%2f..%2f${MARKER}`))
const endpoint = fc.oneof(
  reference.map(r => `manifests/${r}`),
  digestLike.map(d => `blobs/${d}`),
  fc.constant('blobs/uploads/'),
  fc.oneof(fc.uuid(), hostile).map(id => `blobs/uploads/${id}`),
  fc.constant('tags/list'),
  digestLike.map(d => `referrers/${d}`),
  hostile,
)
const query = fc.oneof(
  fc.constant(''),
  digestLike.map(d => `?digest=${d}`),
  fc.tuple(digestLike, name).map(([d, n]) => `?mount=${d}&from=${n}`),
  fc.tuple(fc.oneof(fc.nat(1e6).map(String), hostile), hostile).map(([n, l]) => `?n=${n}&last=${l}`),
  fc.oneof(fc.constantFrom('ghcr.io', 'docker.io', 'evil.example', ''), hostile).map(ns => `?ns=${ns}`),
  hostile.map(q => `?${q}`),
)
const manifestBody = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }).map(v => JSON.stringify(v) ?? 'null'),
  fc.record({ schemaVersion: fc.oneof(fc.constant(2), fc.jsonValue()), mediaType: fc.oneof(fc.constant('application/vnd.oci.image.manifest.v1+json'), fc.jsonValue()), config: fc.jsonValue(), layers: fc.oneof(fc.array(fc.jsonValue(), { maxLength: 3 }), fc.jsonValue()) }, { requiredKeys: [] }).map(v => JSON.stringify(v)),
  fc.nat(20_000).map(n => '['.repeat(n) + ']'.repeat(n)),
  fc.string({ unit: 'binary', maxLength: 100 }),
)
const header = <T>(key: string, value: fc.Arbitrary<T>): fc.Arbitrary<Record<string, string>> =>
  fc.option(value.map(v => String(v).replace(/[^\x20-\x7e]/g, '')), { nil: undefined }).map(v => v === undefined ? {} : { [key]: v })
const registryRequest = fc.record({
  method: fc.constantFrom('GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE', 'OPTIONS'),
  target: fc.oneof(
    fc.tuple(name, endpoint, query).map(([n, e, q]) => `/v2/${n}/${e}${q}`),
    fc.array(fc.constantFrom(...TRAVERSAL_PIECES, 'v2', MARKER), { maxLength: 10 }).map(xs => `/${xs.join('/')}`),
    fc.constantFrom('/v2/', '/v2', '/v2/_catalog?n=-1', '/v2/_catalog?n=99999999999999999999', '/healthz', '/metrics', '/setup/containerd', '/ca.key'),
  ),
  headers: fc.tuple(
    header('range', fc.oneof(fc.constantFrom('bytes=0-', 'bytes=-1', 'bytes=5-1', 'bytes=0-0,2-3', 'bytes=99999999999999999999-'), fc.string({ maxLength: 20 }))),
    header('content-range', fc.oneof(fc.constantFrom('0-0', '0-99999999999999999999', '5-1', 'bytes 0-1/*'), fc.string({ maxLength: 20 }))),
    header('content-type', fc.oneof(fc.constantFrom('application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.index.v1+json', 'application/octet-stream'), fc.string({ maxLength: 20 }))),
    header('accept', fc.oneof(fc.constant('application/vnd.oci.image.index.v1+json'), fc.string({ maxLength: 20 }))),
  ).map(hs => Object.assign({}, ...hs) as Record<string, string>),
  body: fc.option(manifestBody, { nil: undefined }),
})

t.test('registry door: generated requests get 2xx or an OCI 4xx, never a 5xx', async t => {
  const rssBefore = process.memoryUsage().rss
  const cases = fc.sample(registryRequest, { seed: FUZZ_SEED, numRuns: REGISTRY_CASES })
  const problems: string[] = []
  const statuses = new Map<number, number>()
  for (let i = 0; i < cases.length; i += CONC) {
    await Promise.all(cases.slice(i, i + CONC).map(async c => {
      const body = c.body === undefined || c.method === 'GET' || c.method === 'HEAD' ? undefined : Buffer.from(c.body)
      const a = await send(app.registryPort, c.method, onTheWire(c.target), c.headers, body).catch((err: Error) => ({ status: 0, headers: {}, body: Buffer.from(err.message) }))
      statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1)
      const problem = registryAnswerProblem(c.method, a)
      if (problem !== undefined) problems.push(`${c.method} ${c.target.slice(0, 200)} ${JSON.stringify(c.headers)}: ${problem}`)
    }))
  }
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`)
  t.same(problems.slice(0, 20), [], `${cases.length} requests, each answered 2xx or with an OCI 4xx`)
  t.equal((await send(app.registryPort, 'GET', '/v2/')).status, 200, 'still answering')
  t.ok(process.memoryUsage().rss - rssBefore < RSS_GROWTH_MAX, `RSS grew ${Math.round((process.memoryUsage().rss - rssBefore) / 1048576)} MiB`)
  t.same(app.logs.filter(l => l.level >= 50).map(l => l.msg), [], 'no error logged')
})

const absoluteUri = fc.tuple(fc.constantFrom('http://', 'https://', 'HTTP://', 'ftp://', '//'), fc.oneof(fc.domain(), fc.constantFrom('127.0.0.1', '[::1]', 'registry-1.docker.io', 'localhost:3128')), fc.array(fc.constantFrom(...TRAVERSAL_PIECES), { maxLength: 4 }))
  .map(([s, h, p]) => `${s}${h}/${p.join('/')}`)
const directorTarget = fc.oneof(
  absoluteUri,
  fc.array(fc.constantFrom(...TRAVERSAL_PIECES, 'ca.key', 'ca.crt', 'ca', 'setup', 'systemd', 'metrics'), { maxLength: 6 }).map(xs => `/${xs.join('/')}`),
  fc.constantFrom('*', 'registry-1.docker.io:443', '/ca.crt?x=../ca.key', '/ca.crt#/../ca.key', '/setup/systemd?service=../../ca.key'),
)

t.test('proxy port: generated targets get 200/4xx, never a relay, never the key', async t => {
  const cases = fc.sample(fc.tuple(fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'), directorTarget), { seed: FUZZ_SEED, numRuns: DIRECTOR_CASES })
  const hitsBefore = up.hits.length
  const problems: string[] = []
  for (const [method, target] of cases) {
    const a = await send(app.proxyPort, method, onTheWire(target), { host: 'registry-1.docker.io' }).catch((err: Error) => ({ status: 0, headers: {}, body: Buffer.from(err.message) }))
    if (![200, 400, 403, 404, 405].includes(a.status)) problems.push(`${method} ${target}: ${a.status}`)
    if (a.body.includes('PRIVATE KEY')) problems.push(`${method} ${target}: served a private key`)
    if (/^[a-z]+:\/\//i.test(target) && a.status !== 403 && a.status !== 400) problems.push(`${method} ${target}: absolute URI answered ${a.status}`)
  }
  t.same(problems, [], `${cases.length} requests`)
  t.equal(up.hits.length, hitsBefore, 'nothing was forwarded upstream (no open relay)')
})

async function connectStatus (authority: string): Promise<number> {
  const s = net.connect(app.proxyPort, '127.0.0.1')
  s.on('error', () => {})
  s.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`)
  let head = ''
  return await new Promise(resolve => {
    s.on('data', (d: Buffer) => { head += d.toString('latin1'); if (head.includes('\r\n')) { s.destroy(); resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? -1)) } })
    s.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0)))
  })
}

t.test('CONNECT: generated authorities get 200, 400 or 403', async t => {
  const printable = (s: string): string => s.replace(/[^\x21-\x7e]/g, '')
  const authority = fc.oneof(
    fc.tuple(fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6().map(h => `[${h}]`), fc.ipV6(), hostile.map(printable)), fc.constantFrom(':', '::', ''), fc.oneof(fc.constantFrom('443', '80', '22', '0', '65536', '', '00443'), fc.nat(70000).map(String)))
      .map(([h, s, p]) => `${h}${s}${p}`),
    fc.integer({ min: 250, max: 5000 }).map(n => `${'a'.repeat(n)}:443`),
  ).filter(a => a !== '')
  const cases = fc.sample(authority, { seed: FUZZ_SEED, numRuns: CONNECT_CASES })
  const problems: string[] = []
  for (const a of cases) {
    const status = await connectStatus(a)
    if (![200, 400, 403].includes(status)) problems.push(`${a.slice(0, 100)}: ${status}`)
    // CONNECT_ALLOWED_PORTS is 443 here: nothing else may be opened.
    if (status === 200 && !/:0*443$/.test(a)) problems.push(`${a.slice(0, 100)}: opened a port other than 443`)
  }
  t.same(problems, [], `${cases.length} CONNECTs`)
  t.equal((await send(app.proxyPort, 'GET', '/healthz')).status, 200, 'still answering')
})

t.test('no file was created outside the app\'s directories', async t => {
  const stray: string[] = []
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name)
      const rel = relative(sandbox, p).split(sep)
      if (e.name.includes(MARKER)) stray.push(p)
      if (rel[0] === 'outside') { if (rel.length > 1 && rel.join('/') !== 'outside/canary') stray.push(p); continue }
      if (rel[0] !== 'roots' || (rel.length === 2 && !['ca', 'cache', 'registry'].includes(rel[1]))) { stray.push(p); continue }
      if (e.isDirectory()) await walk(p)
    }
  }
  await walk(sandbox)
  t.same(stray, [], 'everything is under roots/{ca,cache,registry}')
  t.notOk((await readdir(tmpdir())).some(n => n.includes(MARKER)), `nothing named ${MARKER} in ${tmpdir()}`)
})
