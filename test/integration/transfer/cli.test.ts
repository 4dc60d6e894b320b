// The built CLI's warm/export/import as an operator meets them: usage errors are one line and exit 2
// without touching any server; a server that is not there is one line and exit 1; a round trip
// through a running app works with --creds when HTPASSWD_FILE is on.
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import bcrypt from 'bcryptjs'
import { ensureBuilt, runCli } from '../ops/built-cli.js'
import { startDoor } from '../registry-door/fixtures/door-harness.js'
import { addMultiArch } from './fixtures.js'

t.before(ensureBuilt)

t.test('usage errors: one line naming the problem, then the help; exit 2', async t => {
  for (const [args, line] of [
    [['warm'], 'crossdock warm: name at least one image'],
    [['warm', '--bogus', 'x'], /^crossdock warm: Unknown option '--bogus'/],
    [['warm', 'docker.io/library/x:no tag'], 'crossdock warm: bad image reference "docker.io/library/x:no tag": "no tag" is not a tag (letters, digits, _ . -, at most 128)'],
    [['export', 'team/app:1'], 'crossdock export: -o <bundle.tar> is required'],
    [['export', '-o', 'x.tar'], 'crossdock export: name at least one image'],
    [['import'], 'crossdock import: name the archive to import'],
    [['import', '--into', 'disk', 'x.tar'], 'crossdock import: --into "disk": expected hosted or cache'],
    [['import', '--registry', 'ftp://x', 'x.tar'], 'crossdock import: --registry "ftp://x": expected http:// or https://'],
    [['warm', '--creds', 'nopassword', 'docker.io/library/x:1'], 'crossdock warm: --creds expects user:password'],
    [['warm', '--creds', 'a:b', '--creds-file', '/etc/hostname', 'docker.io/library/x:1'], 'crossdock warm: --creds and --creds-file: give one'],
    [['warm', '--creds-file', '/nonexistent/creds', 'docker.io/library/x:1'], 'crossdock warm: --creds-file "/nonexistent/creds": ENOENT'],
  ] as const) {
    const r = await runCli([...args], {})
    t.equal(r.code, 2, args.join(' '))
    if (typeof line === 'string') t.equal(r.stderr.split('\n')[0], line)
    else t.match(r.stderr.split('\n')[0], line)
    t.match(r.stderr, /Usage: crossdock (warm|export|import)/)
  }
})

t.test('no server, no archive: one line, exit 1', async t => {
  const down = await runCli(['export', '--registry', 'http://127.0.0.1:9', '-o', join(t.testdir({}), 'x.tar'), 'team/app:1'], {})
  t.same([down.code, down.stderr], [1, 'crossdock export: cannot reach http://127.0.0.1:9: connection refused (is crossdock running, and is this its REGISTRY_PORT?) (ECONNREFUSED)\n'])
  const missing = await runCli(['import', '--registry', 'http://127.0.0.1:9', '/nonexistent/b.tar'], {})
  t.equal(missing.code, 1)
  t.match(missing.stderr, /^crossdock import: ENOENT: no such file or directory, open '\/nonexistent\/b\.tar'\n$/)
})

t.test('HTPASSWD_FILE: warm and export need --creds; with them, a round trip', async t => {
  const dir = t.testdir({})
  const htpasswd = join(dir, 'htpasswd')
  await writeFile(htpasswd, `ops:${bcrypt.hashSync('s3cret', 4)}\n`)
  const d = await startDoor(t, { HTPASSWD_FILE: htpasswd })
  addMultiArch(d.up, 'library/multi', '1', 30_000)
  const registry = `http://127.0.0.1:${d.app.registryPort}`
  const anon = await runCli(['warm', '--registry', registry, 'docker.io/library/multi:1'], {})
  t.equal(anon.code, 1)
  t.match(anon.stderr, /^crossdock warm: warm: 401 UNAUTHORIZED: .* \(pass --creds user:password: HTPASSWD_FILE is on\)\n$/)
  const warm = await runCli(['warm', '--registry', registry, '--creds', 'ops:s3cret', 'docker.io/library/multi:1'], {})
  t.equal(warm.code, 0, warm.stderr)
  t.match(warm.stdout, 'docker.io/library/multi:1: warm (4 fetched')
  t.notMatch(warm.stdout + warm.stderr, 's3cret')
  const out = join(dir, 'b.tar')
  // The password from a file, out of ps: a file without user:password is refused without echoing it.
  const credsFile = join(dir, 'creds')
  await writeFile(credsFile, 'ops-s3cret\n', { mode: 0o600 })
  const badFile = await runCli(['export', '--registry', registry, '--creds-file', credsFile, '-o', out, 'docker.io/library/multi:1'], {})
  t.equal(badFile.code, 2)
  t.equal(badFile.stderr.split('\n')[0], `crossdock export: --creds-file ${JSON.stringify(credsFile)}: expected user:password on its first line`)
  t.notMatch(badFile.stderr, 's3cret')
  await writeFile(credsFile, 'ops:s3cret\n', { mode: 0o600 })
  const exp = await runCli(['export', '--registry', registry, '--creds-file', credsFile, '-o', out, 'docker.io/library/multi:1'], {})
  t.equal(exp.code, 0, exp.stderr)
  t.match(exp.stdout, /b\.tar: 1 image\(s\), 7 blobs, \d+ bytes/)
  t.equal(d.up.count('GET', '/blobs/'), 4, 'the export read from the warm cache')
  const imp = await runCli(['import', '--registry', registry, '--into', 'cache', out], {})
  t.equal(imp.code, 1)
  t.match(imp.stderr, /401 UNAUTHORIZED/, 'importing into the cache is a write: it needs credentials')
})
