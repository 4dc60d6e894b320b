// STORAGE and S3_*: parsed with the rest of the configuration; each bad value is one line that
// names the variable, the value and what is expected, and the secret key never appears in it.
import t from 'tap'
import { loadConfig, describeConfig } from '../../../src/config/index.js'

const S3 = { STORAGE: 's3', S3_BUCKET: 'images', S3_ACCESS_KEY_ID: 'AKID', S3_SECRET_ACCESS_KEY: 's3cr3t/value' }

t.test('fs by default; s3 with its defaults', async t => {
  t.same(loadConfig({}).storage, { kind: 'fs' })
  t.same(loadConfig({ ...S3, S3_ENDPOINT: 'http://rgw.internal:7480', S3_PREFIX: '/crossdock/prod/' }).storage, {
    kind: 's3',
    endpoint: new URL('http://rgw.internal:7480'),
    bucket: 'images',
    region: 'us-east-1',
    accessKeyId: 'AKID',
    secretAccessKey: 's3cr3t/value',
    prefix: 'crossdock/prod',
  })
  const chain = loadConfig({ STORAGE: 'S3', S3_BUCKET: 'images' }).storage
  t.same(chain, { kind: 's3', endpoint: undefined, bucket: 'images', region: 'us-east-1', prefix: '' }, 'no keys: the SDK credential chain')
})

t.test('bad values: one line naming the variable', async t => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ STORAGE: 'disk' }, /^STORAGE="disk": expected one of fs, s3$/],
    [{ STORAGE: 's3' }, /^S3_BUCKET="": expected a bucket name when STORAGE=s3$/],
    [{ ...S3, S3_BUCKET: 'Bad_Bucket' }, /^S3_BUCKET="Bad_Bucket": expected an S3 bucket name/],
    [{ ...S3, S3_ENDPOINT: 'rgw.internal:7480' }, /^S3_ENDPOINT="rgw.internal:7480": expected a URL with scheme http: or https:$/],
    [{ ...S3, S3_ENDPOINT: 'http://key:secret@rgw.internal' }, /^S3_ENDPOINT=.*: expected a URL without credentials/],
    [{ ...S3, S3_REGION: 'US East' }, /^S3_REGION="US East": expected a region name/],
    [{ STORAGE: 's3', S3_BUCKET: 'images', S3_ACCESS_KEY_ID: 'AKID' }, /^S3_SECRET_ACCESS_KEY="[^"]*": expected S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY to be set together$/],
    [{ STORAGE: 's3', S3_BUCKET: 'images', S3_SECRET_ACCESS_KEY: 'x' }, /^S3_ACCESS_KEY_ID="": expected S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY/],
    [{ ...S3, S3_PREFIX: 'a//b' }, /^S3_PREFIX="a\/\/b": expected path segments/],
  ]
  for (const [env, expected] of cases) {
    const err = (() => { try { loadConfig(env); return undefined } catch (e) { return e as Error } })()
    t.match(err?.message, expected, JSON.stringify(env))
    t.notMatch(err?.message ?? '', /\n|s3cr3t/, 'one line, no secret')
  }
  t.same(loadConfig({ STORAGE: 'fs', S3_BUCKET: 'Bad_Bucket' }).storage, { kind: 'fs' }, 'S3_* are not read unless STORAGE=s3')
})

t.test('config check shows the secret key redacted', async t => {
  const row = describeConfig(S3).find(r => r.name === 'S3_SECRET_ACCESS_KEY')
  t.same(row, { name: 'S3_SECRET_ACCESS_KEY', value: '[redacted]', source: 'env' })
})

t.test('crossdock gc on a bucket that does not answer: one line before anything is touched', async t => {
  const { ensureBuilt, runCli } = await import('../../integration/ops/built-cli.js')
  await ensureBuilt()
  // Nothing listens there (127.0.0.45 is this test address): connection refused at once.
  const r = await runCli(['gc', '--dry-run'], { ...S3, S3_ENDPOINT: 'http://127.0.0.45:9', CA_DIR: '/nonexistent/ca' }, { timeoutMs: 30_000 })
  t.equal(r.code, 2, 'a configuration error')
  t.equal(r.stdout, '')
  t.match(r.stderr, /STORAGE=s3: cannot use S3_BUCKET="images" at http:\/\/127\.0\.0\.45:9: bucket images: ECONNREFUSED/)
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  t.notMatch(r.stderr, /s3cr3t/, 'no secret in the line')
})
