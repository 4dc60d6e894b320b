// The app as one replica on a bucket (STORAGE=s3) of a real Ceph RGW, with a real redis-server:
//   - /readyz stays ready without Redis and says so; the status page and crossdock_cluster_redis_up
//     follow Redis; the Redis password is in no log line (REDIS_URL is refused with STORAGE=fs,
//     so these run on the bucket: cluster-config.test.ts, startup.test.ts);
//   - one S3 client per replica: the hosted registry and the pull-through cache go through the same
//     bucket client, destroyed once by stop(), after both (the cache's last read-times flush
//     included) are done with it.
// Address 127.0.0.44 (shared with redis-fill-lock*.test.ts, which use redis :6379 and :6380):
// RGW (mon :3300, radosgw :7480, OSD 6800–7300), redis-server :6381, the fake upstream on port 0;
// the apps on 127.0.0.1, port 0.
import t from 'tap'
import { ListObjectsV2Command } from '@aws-sdk/client-s3'
import { requirePrivateNetns, createScope, waitFor, freePort } from '../../helpers/e2e/index.js'
import { startBucketPeers } from '../../helpers/bucket-peers.js'
import { FakeUpstream, sha256 } from '../../helpers/fake-upstream.js'
import { startApp } from '../../helpers/start-app.js'
import { loadConfig, type S3Config } from '../../../src/config/index.js'
import { S3Bucket } from '../../../src/objects/s3-bucket.js'

const ADDRESS = '127.0.0.44'
const REDIS_PORT = 6381
const BUCKET = 'crossdock-app'
const HUB = 'registry-1.docker.io'

t.jobs = 1

/** `bucket` with every method call recorded as `<method> <first argument if a string>`, in order. */
function watched (bucket: S3Bucket, calls: string[]): S3Bucket {
  return new Proxy(bucket, {
    get (target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver)
      if (typeof v !== 'function') return v
      return (...args: unknown[]) => {
        calls.push(`${String(prop)} ${typeof args[0] === 'string' ? args[0] : ''}`.trim())
        return (v as (...a: unknown[]) => unknown).apply(target, args)
      }
    },
  })
}

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'app-on-bucket')
  const { rgw, redis, admin } = await startBucketPeers(scope, m => { t.comment(m) }, { address: ADDRESS, bucket: BUCKET, redisPort: REDIS_PORT })
  const upstream = new FakeUpstream()
  await upstream.start(ADDRESS)
  scope.defer('stop fake upstream', async () => { await upstream.stop() })

  let prefixes = 0
  /** A fresh S3_PREFIX per app: its own hosted storage and cache in the bucket. */
  const s3Env = (): Record<string, string> => ({
    STORAGE: 's3', S3_ENDPOINT: rgw.endpoint, S3_BUCKET: BUCKET, S3_ACCESS_KEY_ID: rgw.accessKeyId, S3_SECRET_ACCESS_KEY: rgw.secretAccessKey, S3_PREFIX: `app-${++prefixes}`, CACHE_MIN_FREE: '0',
  })
  const keysUnder = async (prefix: string): Promise<string[]> =>
    ((await admin.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${prefix}/` }))).Contents ?? []).map(o => o.Key!.slice(prefix.length + 1))

  t.test('/readyz stays ready without Redis and says so; status and metrics follow Redis', async t => {
    const readyz = async (port: number): Promise<{ status: number, body: { status: string, coordination: string } }> => {
      const r = await fetch(`http://127.0.0.1:${port}/readyz`)
      return { status: r.status, body: await r.json() as { status: string, coordination: string } }
    }
    const cluster = async (port: number): Promise<{ replica: string, mode: string, coordinated: boolean }> =>
      ((await (await fetch(`http://127.0.0.1:${port}/status.json`)).json()) as { cluster: { replica: string, mode: string, coordinated: boolean } }).cluster
    const metric = async (port: number): Promise<string | undefined> =>
      /^crossdock_cluster_redis_up (\d)$/m.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())?.[1]

    const alone = await startApp()
    t.teardown(alone.stop)
    const ra = await readyz(alone.proxyPort)
    t.same([ra.status, ra.body.status, ra.body.coordination], [200, 'ready', 'off: no REDIS_URL, this replica fills on its own'], 'STORAGE=fs, no REDIS_URL')
    t.match(await cluster(alone.proxyPort), { mode: 'local', coordinated: false, replica: new RegExp(`-${process.pid}$`) })

    const aloneOnBucket = await startApp(s3Env())
    t.teardown(aloneOnBucket.stop)
    t.equal((await readyz(aloneOnBucket.proxyPort)).body.coordination, 'off: no REDIS_URL, this replica fills on its own', 'STORAGE=s3, no REDIS_URL')
    t.equal(await metric(aloneOnBucket.proxyPort), '0')

    const down = await startApp({ ...s3Env(), REDIS_URL: `redis://:s3cret-pw@${ADDRESS}:${await freePort(ADDRESS)}`, CLUSTER_LOCK_TTL: '3s' })
    t.teardown(down.stop)
    const r = await readyz(down.registryPort)
    t.equal(r.status, 200, 'ready: only speed is lost')
    t.equal(r.body.coordination, 'redis unreachable: this replica fills on its own until it returns')
    t.match(await cluster(down.proxyPort), { mode: 'redis', coordinated: false })
    t.equal(await metric(down.proxyPort), '0')

    const coordinated = await startApp({ ...s3Env(), REDIS_URL: redis.url })
    t.teardown(coordinated.stop)
    await waitFor('the app to reach Redis', async () => (await cluster(coordinated.proxyPort)).coordinated ? true : undefined, { timeoutMs: 10_000, intervalMs: 20 })
    t.equal((await readyz(coordinated.proxyPort)).body.coordination, 'redis: one fill per blob across replicas')
    t.equal(await metric(coordinated.proxyPort), '1')
    t.notOk(JSON.stringify(down.logs).includes('s3cret-pw'), 'the Redis password is in no log line')
  })

  t.test('one bucket client for the hosted registry and the cache, destroyed once, after both', async t => {
    const env = s3Env()
    const prefix = env.S3_PREFIX
    const calls: string[] = []
    const bucket = watched(new S3Bucket(loadConfig(env).storage as S3Config), calls)
    const app = await startApp({ ...env, UPSTREAM_CONNECT_TO: upstream.connectTo([HUB]) }, { test: { bucket } })
    const registry = `http://127.0.0.1:${app.registryPort}`
    let stopped = false
    t.teardown(async () => { if (!stopped) await app.stop() })

    const pushed = Buffer.from('hosted layer bytes')
    const push = await fetch(`${registry}/v2/team/app/blobs/uploads/?digest=${sha256(pushed)}`, { method: 'POST', body: pushed, headers: { 'content-type': 'application/octet-stream' } })
    t.equal(push.status, 201, 'a hosted push')
    const cached = Buffer.from('pull-through layer bytes')
    const d = upstream.addBlob(cached)
    for (const label of ['a miss, filled', 'a hit']) {
      const r = await fetch(`${registry}/v2/docker.io/library/app/blobs/${d}`)
      t.equal(sha256(Buffer.from(await r.arrayBuffer())), d, `${label}: the blob's bytes`)
    }
    t.equal(upstream.count('GET', `/blobs/${d}`), 1)
    await waitFor('the bucket copy to be published', async () => (await keysUnder(prefix)).some(k => k.startsWith('cache/blobs/')) ? true : undefined, { timeoutMs: 10_000, intervalMs: 50 })

    stopped = true
    await app.stop()
    const keyed = calls.map(c => c.split(' ')[1]).filter((k): k is string => k !== undefined)
    t.ok(keyed.some(k => k.startsWith(`${prefix}/repositories/team/app/`)), 'the hosted registry used it')
    t.ok(keyed.some(k => k.startsWith(`${prefix}/cache/blobs/`)), 'the cache used it')
    t.equal(calls.filter(c => c === 'destroy').length, 1, 'destroyed once')
    t.equal(calls.at(-1), 'destroy', `destroyed last, after ${calls.length - 1} calls`)
    const flush = calls.findIndex(c => c.startsWith(`put ${prefix}/cache/atimes/`))
    t.ok(flush >= 0 && flush < calls.length - 1, 'the cache\'s last read-times flush went through it before')
    t.ok((await keysUnder(prefix)).some(k => k.startsWith('cache/atimes/')), 'and landed')
  })
}
