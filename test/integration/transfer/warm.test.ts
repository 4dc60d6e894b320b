// Warm-up through the registry door's own pull-through path: POST /warm (what `crossdock warm`
// sends) fetches every platform's manifests and blobs once, a second run fetches nothing, a pull
// afterwards is all hits; a 429 stops the run and says when to retry; bad input is a clear 400;
// HTPASSWD_FILE makes /warm a pull that needs credentials, while WARM_IMAGES still warms at start.
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import bcrypt from 'bcryptjs'
import { startDoor, HUB, upstreamBlobGets } from '../registry-door/fixtures/door-harness.js'
import { addMultiArch, doorClient, warmVia, DOCKERD_ACCEPT } from './fixtures.js'
import { startApp } from '../../helpers/start-app.js'
import { FakeUpstream } from '../../helpers/fake-upstream.js'
import { ConfigError } from '../../../src/errors.js'

t.test('warm fetches every platform once; the second run and a later pull fetch nothing', async t => {
  const d = await startDoor(t)
  const img = addMultiArch(d.up, 'library/multi', '1')
  const client = doorClient(d.app)
  t.teardown(async () => { await client.close() })

  const first = await warmVia(client, ['docker.io/library/multi:1'])
  t.equal(first.status, 200)
  const image = first.events.find(e => e.event === 'image')
  t.equal(image.digest, img.index)
  t.equal(image.manifests, 3, 'the index and both platform manifests')
  t.equal(image.blobs, 4)
  t.same(first.events.filter(e => e.event === 'blob').map(e => e.status), ['fetched', 'fetched', 'fetched', 'fetched'])
  t.same(first.events.at(-1), { event: 'end', ok: true, images: 1, failed: 0, fetchedBytes: first.events.find(e => e.event === 'image-done').fetchedBytes })
  t.equal(upstreamBlobGets(d.up), 4, 'one upstream GET per blob')
  t.equal(d.up.count('GET', '/manifests/'), 3, 'one upstream GET per manifest')
  t.equal(d.up.count('GET', '/manifests/1'), 0, 'the tag was resolved with a HEAD, fetched by digest')

  const hits = d.up.hits.length
  const second = await warmVia(client, ['docker.io/library/multi:1'])
  t.same(second.events.filter(e => e.event === 'blob').map(e => e.status), ['cached', 'cached', 'cached', 'cached'])
  t.same(d.up.hits.slice(hits).map(h => `${h.method} ${h.path}`), ['HEAD /v2/library/multi/manifests/1'], 'only the tag HEAD reached the upstream')

  // A client's pull of either platform afterwards: every blob a HIT.
  for (const p of img.platforms) {
    const m = await d.reg('GET', `/v2/docker.io/library/multi/manifests/${p.manifest}`, { headers: { accept: DOCKERD_ACCEPT } })
    t.equal(m.headers['x-cache-status'], 'HIT')
    for (const b of [p.config, p.layer]) t.equal((await d.reg('GET', `/v2/docker.io/library/multi/blobs/${b}`)).headers['x-cache-status'], 'HIT')
  }
  t.equal(upstreamBlobGets(d.up), 4, 'still 4 upstream blob GETs')
})

t.test('a 429 stops the run and says when to retry; the next image is not tried', async t => {
  const d = await startDoor(t)
  addMultiArch(d.up, 'library/limited', '1')
  addMultiArch(d.up, 'library/after', '1')
  d.up.fault = (req, res, hit) => {
    if (!(hit.method === 'GET' && hit.path.includes('/blobs/'))) return false
    res.writeHead(429, { 'retry-after': '120', 'content-type': 'application/json' })
    res.end('{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit"}]}')
    return true
  }
  const client = doorClient(d.app)
  t.teardown(async () => { await client.close() })
  const before = Date.now()
  const r = await warmVia(client, ['docker.io/library/limited:1', 'docker.io/library/after:1'])
  const limited = r.events.find(e => e.event === 'rate-limited')
  t.ok(limited, 'rate-limited event')
  t.match(limited.message, /rate limiting \(429\); stopped, retry after/)
  const at = Date.parse(limited.retryAt)
  t.ok(at >= before + 119_000 && at <= Date.now() + 121_000, `retryAt ${limited.retryAt} is Retry-After from now`)
  t.equal(d.up.count('GET', '/blobs/'), 1, 'no blob GET after the 429')
  t.equal(d.up.hits.filter(h => h.path.includes('library/after')).length, 0, 'the next image was not tried')
  t.same(r.events.at(-1).ok, false)
})

t.test('bad input: a clear 400; an unknown image: an error event; the others still warm', async t => {
  const d = await startDoor(t)
  addMultiArch(d.up, 'library/known', '1')
  const client = doorClient(d.app)
  t.teardown(async () => { await client.close() })
  for (const [images, reason] of [
    [['docker.io/library/UPPER:1'], /is not a repository name/],
    [['docker.io/library/x:bad tag'], /is not a tag/],
    [['team/app:1'], /not an upstream image/],
  ] as const) {
    const r = await warmVia(client, [...images])
    t.equal(r.status, 400, images[0])
    t.match(JSON.parse(r.body).errors[0].message, reason)
  }
  const notJson = await client.send('POST', '/warm', {}, 'images=x')
  t.equal(notJson.statusCode, 400)
  t.match(await notJson.body.text(), /must be JSON/)
  const get = await client.send('GET', '/warm')
  t.equal(get.statusCode, 405)
  await get.body.dump()

  const r = await warmVia(client, ['docker.io/library/nope:1', 'docker.io/library/known:1'])
  t.match(r.events.find(e => e.event === 'error'), { image: 'docker.io/library/nope:1', message: /unknown image docker\.io\/library\/nope:1/ })
  t.ok(r.events.some(e => e.event === 'image-done' && e.image === 'docker.io/library/known:1'))
  t.match(r.events.at(-1), { event: 'end', ok: false, failed: 1 })
})

t.test('HTPASSWD_FILE: /warm is authorised like a pull; WARM_IMAGES warms at start with its own credential', async t => {
  const dir = t.testdir({})
  const htpasswd = join(dir, 'htpasswd')
  await writeFile(htpasswd, `ops:${bcrypt.hashSync('s3cret', 4)}\n`)
  // The image is upstream before the app starts: WARM_IMAGES runs as soon as the doors listen.
  const up = new FakeUpstream()
  await up.start()
  t.teardown(async () => { await up.stop() })
  addMultiArch(up, 'library/boot', '1')
  const app = await startApp({ UPSTREAM_CONNECT_TO: up.connectTo([HUB]), CACHE_MIN_FREE: '0', HTPASSWD_FILE: htpasswd, WARM_IMAGES: 'docker.io/library/boot:1' })
  t.teardown(async () => { await app.stop() })
  const d = { up, app }
  await waitForLog(d.app.logs, l => l.msg === 'warm-up (WARM_IMAGES) finished')
  t.match(d.app.logs.find(l => l.msg === 'warm-up (WARM_IMAGES) finished'), { ok: true })
  t.equal(upstreamBlobGets(d.up), 4, 'WARM_IMAGES fetched both platforms at start')
  t.notOk(JSON.stringify(d.app.logs).includes('Bearer '), 'the internal credential is never logged')
  t.notOk(d.up.hits.some(h => String(h.headers.authorization ?? '').startsWith('Bearer ') && h.path !== '/v2/'), 'nor sent upstream')

  const anonymous = await warmVia(doorClient(d.app), ['docker.io/library/boot:1'])
  t.equal(anonymous.status, 401)
  const wrong = await warmVia(doorClient(d.app, `Basic ${Buffer.from('ops:wrong').toString('base64')}`), ['docker.io/library/boot:1'])
  t.equal(wrong.status, 401)
  const ok = await warmVia(doorClient(d.app, `Basic ${Buffer.from('ops:s3cret').toString('base64')}`), ['docker.io/library/boot:1'])
  t.equal(ok.status, 200)
  t.same(ok.events.filter(e => e.event === 'blob').map(e => e.status), ['cached', 'cached', 'cached', 'cached'])
})

t.test('WARM_IMAGES naming no upstream stops the start with the variable named', async t => {
  const err = await startApp({ WARM_IMAGES: 'team/app:1' }).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof ConfigError, 'a configuration error')
  t.match((err as Error).message, /^WARM_IMAGES="team\/app:1": "team\/app:1" is not an upstream image/)
  await t.rejects(startApp({ WARM_INTERVAL: 'soon' }), /WARM_INTERVAL/)
})

async function waitForLog (logs: Array<Record<string, any>>, match: (l: Record<string, any>) => boolean): Promise<void> {
  // Waits on the app's own log line (the event), bounded so a missing one fails instead of hanging.
  for (let i = 0; i < 500 && !logs.some(match); i++) await new Promise(resolve => setTimeout(resolve, 20))
  if (!logs.some(match)) throw new Error('log line never came')
}

