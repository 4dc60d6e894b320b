// The built CLI against temp directories, as an operator runs it: ca info/export agree with openssl,
// cache ls/prune/verify see and change what a real CacheStore wrote, --help and usage errors.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pino } from 'pino'
import { loadOrCreateCa } from '../../../src/tls/ca.js'
import { openCacheStore } from '../../../src/cache/cache-store.js'
import { recencyPath, contentPath } from '../../../src/cache/cache-paths.js'
import { ensureBuilt, runCli } from './built-cli.js'
import { parseDigest } from '../../../src/oci/digest.js'

const silent = pino({ level: 'silent' })
const DAY = 86_400_000
let dir: string
let env: Record<string, string>

t.before(async () => {
  await ensureBuilt()
  dir = await mkdtemp(join(tmpdir(), 'crossdock-cli-'))
  env = { CA_DIR: join(dir, 'ca'), CACHE_DIR: join(dir, 'cache'), REGISTRY_STORAGE_DIR: join(dir, 'registry') }
})
t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })

function digestOf (b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`
}

/** A cache with three blobs from two repositories, one manifest and its tag, written by the real store. */
async function seedCache (cacheDir: string): Promise<{ small: string, big: string, other: string, manifest: string }> {
  const store = await openCacheStore({ dir: cacheDir, maxSize: 1 << 30, inactiveMs: 0, log: silent })
  const fill = async (data: Buffer, repository: string): Promise<string> => {
    const d = digestOf(data)
    const r = store.blobs.beginFill(parseDigest(d), Readable.from([data]), { expectedSize: data.length, origin: { host: 'registry-1.docker.io', repository } })
    if (!('fill' in r)) throw new Error(r.bypass)
    await r.fill.done
    return d
  }
  const small = await fill(randomBytes(1000), 'library/alpine')
  const big = await fill(randomBytes(300_000), 'library/node')
  const other = await fill(randomBytes(50_000), 'library/node')
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, layers: [] }))
  const manifest = digestOf(body)
  await store.manifests.put(parseDigest(manifest), body, 'application/vnd.oci.image.manifest.v1+json', { host: 'registry-1.docker.io', repository: 'library/node' })
  await store.tags.put({ host: 'registry-1.docker.io', repository: 'library/node', tag: '22' }, { digest: manifest, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: body.length, fetchedAt: Date.now() })
  await store.close()
  return { small, big, other, manifest }
}

t.test('--help on every command, usage errors exit 2', async t => {
  const top = await runCli(['--help'], env)
  t.equal(top.code, 0)
  // The command list of the help text (generated from COMMANDS), minus the help line itself.
  const names = [...top.stdout.matchAll(/^ {2}(\S+(?: \S+)?) {2,}/gm)].map(m => m[1]).filter(n => !n.startsWith('help') && !n.startsWith('version'))
  t.ok(['serve', 'config check', 'ca info', 'ca export', 'cache ls', 'cache prune', 'cache verify', 'gc'].every(n => names.includes(n)), `commands listed: ${names.join(', ')}`)
  for (const name of names) {
    const r = await runCli([...name.split(' '), '--help'], env)
    t.equal(r.code, 0, `${name} --help`)
    t.match(r.stdout, `Usage: crossdock ${name}`)
  }
  const group = await runCli(['cache', '--help'], env)
  t.match(group.stdout, /cache <ls\|prune\|verify>/, 'group help')
  const bad = await runCli(['cache', 'prune', '--bogus'], env)
  t.equal(bad.code, 2)
  t.match(bad.stderr, /Unknown option '--bogus'/)
  const noOpt = await runCli(['cache', 'prune'], env)
  t.equal(noOpt.code, 2, 'prune needs an option')
  const badSize = await runCli(['cache', 'prune', '--max-size', 'lots'], env)
  t.equal(badSize.code, 2)
  t.match(badSize.stderr, /--max-size="lots": expected a size/)
})

t.test('ca info fingerprint equals openssl\'s, ca export prints the certificate only', async t => {
  const missing = await runCli(['ca', 'info'], env)
  t.equal(missing.code, 1, 'no CA yet')
  t.match(missing.stderr, /no root CA at .*ca\.crt .*serve/)
  t.notOk(existsSync(join(dir, 'ca', 'ca.crt')), 'ca info does not create one')

  await loadOrCreateCa({ caDir: join(dir, 'ca'), log: silent })
  const crt = join(dir, 'ca', 'ca.crt')
  const info = await runCli(['ca', 'info'], env)
  t.equal(info.code, 0, info.stderr)
  const openssl = execFileSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256', '-in', crt], { encoding: 'utf8' })
  const expected = openssl.trim().split('=')[1]
  t.match(info.stdout, new RegExp(`^sha256: +${expected}$`, 'm'), 'same SHA-256 fingerprint as openssl')
  const notAfter = execFileSync('openssl', ['x509', '-noout', '-enddate', '-in', crt], { encoding: 'utf8' }).trim().split('=')[1]
  t.match(info.stdout, new RegExp(`^not after: +${new Date(notAfter).toISOString()}$`, 'm'), 'not-after as openssl reads it')
  t.match(info.stdout, /^subject: +CN=crossdock root CA/m)
  t.match(info.stdout, new RegExp(`^path: +${crt}$`, 'm'))
  const json = JSON.parse((await runCli(['ca', 'info', '--json'], env)).stdout)
  t.equal(json.fingerprintSha256, expected)

  const exported = await runCli(['ca', 'export'], env)
  t.equal(exported.code, 0)
  t.equal(exported.stdout, await readFile(crt, 'utf8'), 'the PEM clients install')
  t.notMatch(exported.stdout, /PRIVATE KEY/)
})

t.test('cache ls: size, entries and biggest repositories from the index metadata', async t => {
  const cacheDir = join(dir, 'ls-cache')
  await seedCache(cacheDir)
  const r = await runCli(['cache', 'ls'], { ...env, CACHE_DIR: cacheDir })
  t.equal(r.code, 0, r.stderr)
  const manifestBytes = JSON.stringify({ schemaVersion: 2, layers: [] }).length
  t.match(r.stdout, new RegExp(`\\(${1000 + 300_000 + 50_000 + manifestBytes} bytes\\) in 5 entries`))
  t.match(r.stdout, /3 blobs .* 1 manifests .* 1 tags/)
  const rows = r.stdout.split('\n').filter(l => l.includes('registry-1.docker.io/'))
  t.match(rows[0], /^\s+\S+ KiB\s+3\s+registry-1\.docker\.io\/library\/node$/, 'biggest first: node, 2 blobs + manifest')
  t.match(rows[1], /1\s+registry-1\.docker\.io\/library\/alpine$/)
  const json = JSON.parse((await runCli(['cache', 'ls', '--json', '--top', '1'], { ...env, CACHE_DIR: cacheDir })).stdout)
  t.same(json.repositories.map((x: { repository: string }) => x.repository), ['registry-1.docker.io/library/node'])
})

t.test('cache prune removes what is older, then the least recently read down to a size', async t => {
  const cacheDir = join(dir, 'prune-cache')
  const { small, big, other, manifest } = await seedCache(cacheDir)
  // Last reads: small 10 days ago, big 3 days ago, other and the manifest/tag now.
  const recency = JSON.parse(await readFile(recencyPath(cacheDir), 'utf8'))
  recency.entries[`blob:${small}`] = Date.now() - 10 * DAY
  recency.entries[`blob:${big}`] = Date.now() - 3 * DAY
  await writeFile(recencyPath(cacheDir), JSON.stringify(recency))
  const cenv = { ...env, CACHE_DIR: cacheDir }

  const dry = await runCli(['cache', 'prune', '--older-than', '7d', '--dry-run'], cenv)
  t.match(dry.stdout, `would remove blob ${small}`)
  t.match(dry.stdout, /would remove 1 entries/)
  t.match((await runCli(['cache', 'ls'], cenv)).stdout, /in 5 entries/, 'dry run changed nothing')

  const old = await runCli(['cache', 'prune', '--older-than', '7d'], cenv)
  t.equal(old.code, 0, old.stderr)
  t.match(old.stdout, `removed blob ${small} registry-1.docker.io/library/alpine`)
  t.notMatch(old.stdout, big)
  const sized = await runCli(['cache', 'prune', '--max-size', '100k'], cenv)
  t.match(sized.stdout, `removed blob ${big}`, 'least recently read goes first')
  t.notMatch(sized.stdout, other, 'what fits stays')
  t.notMatch(sized.stdout, manifest)

  // What the store itself loads afterwards: the removed ones are gone from index and disk.
  const store = await openCacheStore({ dir: cacheDir, maxSize: 1 << 30, inactiveMs: 0, log: silent })
  t.teardown(async () => { await store.close() })
  t.equal(store.blobs.stat(parseDigest(small)), undefined)
  t.equal(store.blobs.stat(parseDigest(big)), undefined)
  t.ok(store.blobs.stat(parseDigest(other)), 'kept')
  t.ok(store.manifests.has(parseDigest(manifest)), 'kept')
  t.equal(store.stats().entries, 3, 'other blob, manifest, tag')
})

t.test('cache verify drops an entry whose content file had a byte flipped', async t => {
  const cacheDir = join(dir, 'verify-cache')
  const { small, big, other } = await seedCache(cacheDir)
  const cenv = { ...env, CACHE_DIR: cacheDir }
  const clean = await runCli(['cache', 'verify'], cenv)
  t.equal(clean.code, 0)
  t.match(clean.stdout, /verified 4 files .*: 4 ok, 0 bad/)
  t.equal(clean.stderr, '', 'no progress output when stderr is not a terminal')

  const before = await openCacheStore({ dir: cacheDir, maxSize: 1 << 30, inactiveMs: 0, log: silent })
  t.ok(before.blobs.stat(parseDigest(big)), 'cached before the corruption')
  const path = contentPath(cacheDir, parseDigest(big))
  await before.close()
  const fh = await open(path, 'r+')
  const b = Buffer.alloc(1)
  await fh.read(b, 0, 1, 1234)
  b[0] ^= 0xff
  await fh.write(b, 0, 1, 1234)
  await fh.close()

  const dry = await runCli(['cache', 'verify', '--dry-run'], cenv)
  t.equal(dry.code, 1, 'dry run reports with exit 1')
  t.ok(existsSync(path), 'and removes nothing')
  const r = await runCli(['cache', 'verify'], cenv)
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, new RegExp(`removed blob ${big} registry-1.docker.io/library/node: content hashes to sha256:`))
  t.match(r.stdout, /3 ok, 1 bad and removed/)
  t.notOk(existsSync(path), 'the corrupt file is gone')
  const after = await openCacheStore({ dir: cacheDir, maxSize: 1 << 30, inactiveMs: 0, log: silent })
  t.teardown(async () => { await after.close() })
  t.equal(after.blobs.stat(parseDigest(big)), undefined, 'the store no longer has it')
  t.ok(after.blobs.stat(parseDigest(small)))
  t.ok(after.blobs.stat(parseDigest(other)))
})
