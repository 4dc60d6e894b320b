// REDIS_URL and CLUSTER_LOCK_TTL: parsed before anything listens; a bad URL is one line naming the
// variable, and a password in it never appears there, nor in `config check`.
import t from 'tap'
import { loadConfig, describeConfig } from '../../../src/config/index.js'
import { createReplicaId } from '../../../src/cluster/replica-id.js'

// REDIS_URL is accepted only beside a bucket (STORAGE=s3).
const S3 = { STORAGE: 's3', S3_BUCKET: 'crossdock' }

t.test('no coordination by default; a Redis URL with its TTL', async t => {
  t.same(loadConfig({}).cluster, { lockTtlMs: 30_000 })
  t.same(loadConfig({ ...S3, REDIS_URL: ' rediss://:pw@redis.internal:6380/2 ', CLUSTER_LOCK_TTL: '10s' }).cluster, { redisUrl: 'rediss://:pw@redis.internal:6380/2', lockTtlMs: 10_000 })
  t.same(loadConfig({ ...S3, REDIS_URL: 'redis://redis.internal' }).cluster.redisUrl, 'redis://redis.internal')
})

t.test('REDIS_URL with STORAGE=fs: refused, naming the variable, the redacted value and what to do', async t => {
  const expected = 'REDIS_URL="redis://[redacted]@redis.internal:6379": expected no value with STORAGE=fs: replicas coordinate through Redis only when they share a bucket (STORAGE=s3); unset it or set STORAGE=s3'
  t.throws(() => loadConfig({ REDIS_URL: 'redis://:s3cret@redis.internal:6379' }), { name: 'ConfigError', message: expected }, 'STORAGE defaults to fs')
  t.throws(() => loadConfig({ STORAGE: 'fs', REDIS_URL: 'redis://:s3cret@redis.internal:6379' }), { name: 'ConfigError', message: expected })
  t.same(loadConfig({ STORAGE: 'fs', REDIS_URL: ' ' }).cluster, { lockTtlMs: 30_000 }, 'empty is unset')
})

t.test('bad values: one line naming the variable, the password redacted', async t => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ REDIS_URL: 'redis.internal:6379' }, /^REDIS_URL="redis.internal:6379": expected a URL with scheme redis: or rediss:/],
    [{ REDIS_URL: 'http://redis.internal' }, /^REDIS_URL="http:\/\/redis.internal": expected a URL with scheme redis: or rediss:/],
    [{ REDIS_URL: 'redis://:s3cret@' }, /^REDIS_URL="redis:\/\/\[redacted\]@": expected a URL/],
    [{ REDIS_URL: 'redis://:s3cret@redis.internal/cache' }, /^REDIS_URL="redis:\/\/\[redacted\]@redis.internal\/cache": expected a database number/],
    [{ REDIS_URL: 'redis.internal 6379' }, /^REDIS_URL="redis.internal 6379": expected a URL such as redis:\/\/redis.internal:6379/],
    [{ REDIS_URL: 'redis://:s3cret@redis internal' }, /^REDIS_URL="redis:\/\/\[redacted\]@redis internal": expected a URL such as/],
    [{ CLUSTER_LOCK_TTL: '1s' }, /^CLUSTER_LOCK_TTL="1s": expected a duration of at least 3s$/],
    [{ CLUSTER_LOCK_TTL: 'soon' }, /^CLUSTER_LOCK_TTL="soon": expected a duration/],
  ]
  for (const [env, expected] of cases) {
    const err = (() => { try { loadConfig({ ...S3, ...env }); return undefined } catch (e) { return e as Error } })()
    t.match(err?.message, expected, JSON.stringify(env))
    t.notMatch(err?.message ?? '', /s3cret/, 'no password in the message')
  }
})

t.test('config check shows the URL without its password', async t => {
  const row = describeConfig({ REDIS_URL: 'redis://user:s3cret@redis.internal:6379/0' }).find(r => r.name === 'REDIS_URL')
  t.equal(row?.value, 'redis://[redacted]@redis.internal:6379/0')
})

t.test('replica ids are key segments: hostname and pid', async t => {
  t.equal(createReplicaId('node-1.example', 42), 'node-1.example-42')
  t.equal(createReplicaId('pod_with spaces/and:colons', 7), 'pod-with-spaces-and-colons-7')
  t.equal(createReplicaId('', 1), 'replica-1')
  const long = createReplicaId('a'.repeat(300), 4194304)
  t.ok(/^[A-Za-z0-9._-]{1,128}$/.test(long), `${long.length} characters`)
})
