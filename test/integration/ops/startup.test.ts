// The built CLI as a new user and a migrating operator meet it: the version without starting
// anything, usage errors that never listen, and every start-up failure as one line and a quick exit
// (never a stack trace or a hang); `config check` finds the same problems without listening.
import t, { type Test } from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI, REPO, ensureBuilt, runCli, type CliResult } from './built-cli.js'

const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version
// Long enough for a slow machine; a command that listens or hangs never ends on its own.
const EXITS_WITHIN = 15_000
let dir: string
let env: Record<string, string>
const REDIS_WITH_FS = 'REDIS_URL="redis://[redacted]@127.0.0.1:6379": expected no value with STORAGE=fs: replicas coordinate through Redis only when they share a bucket (STORAGE=s3); unset it or set STORAGE=s3'

t.before(async () => {
  await ensureBuilt()
  dir = mkdtempSync(join(tmpdir(), 'crossdock-startup-'))
  chmodSync(dir, 0o755) // the uid-10001 cases traverse it
  env = { CA_DIR: join(dir, 'ca'), CACHE_DIR: join(dir, 'cache'), REGISTRY_STORAGE_DIR: join(dir, 'registry'), LISTEN_HOST: '127.0.0.1', PROXY_PORT: '0', REGISTRY_PORT: '0' }
})
t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })

async function cli (args: string[], extra: Record<string, string> = {}, opts: { uid?: number, gid?: number } = {}): Promise<CliResult> {
  return await runCli(args, { ...env, ...extra }, { timeoutMs: EXITS_WITHIN, ...opts })
}

/** A port something else listens on. */
async function busyPort (t: Test): Promise<number> {
  const server = net.createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  return (server.address() as net.AddressInfo).port
}

/** rpardini's create_ca_cert.sh, in short: an RSA key encrypted with des3 and `foobar`, a self-signed CA. */
function rpardiniCa (caDir: string, opts: { traditional?: boolean } = {}): void {
  mkdirSync(caDir, { recursive: true })
  execFileSync('openssl', ['genrsa', ...(opts.traditional === true ? ['-traditional'] : []), '-des3', '-passout', 'pass:foobar', '-out', join(caDir, 'ca.key'), '2048'], { stdio: 'ignore' })
  execFileSync('openssl', ['req', '-new', '-x509', '-key', join(caDir, 'ca.key'), '-passin', 'pass:foobar', '-days', '1300', '-sha256',
    '-subj', '/C=NL/ST=Noord Holland/L=Amsterdam/O=ME/OU=IT/CN=DockerMirrorBox CA Root test', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-out', join(caDir, 'ca.crt')], { stdio: 'ignore' })
  writeFileSync(join(caDir, 'ca.srl'), '01\n')
}

t.test('--version, -v and version print the version and start nothing', async t => {
  for (const args of [['--version'], ['-v'], ['version']]) {
    const r = await cli(args)
    t.notOk(r.timedOut, `${args.join(' ')} exits on its own`)
    t.equal(r.code, 0, args.join(' '))
    t.equal(r.stdout, `crossdock ${VERSION}\n`, `${args.join(' ')} prints the package version`)
    t.equal(r.stderr, '')
  }
})

t.test('an unknown command or flag prints the usage and exits 2, never serves', async t => {
  const cases: Array<[string[], string]> = [
    [['--bogus'], "crossdock: Unknown option '--bogus'"],
    [['-x'], "crossdock: Unknown option '-x'"],
    [['--version', 'extra'], 'crossdock: Unexpected argument \'extra\''],
    [['bogus'], 'crossdock: unknown command "bogus"'],
    [['version', 'x'], 'crossdock version: unexpected argument "x"'],
    [['config', 'check', '--bogus'], "crossdock config check: Unknown option '--bogus'"],
    [['serve', '--bogus'], "crossdock serve: Unknown option '--bogus'"],
    [['gc', '--bogus'], "crossdock gc: Unknown option '--bogus'"],
    [['gc', 'now'], "crossdock gc: Unexpected argument 'now'"],
  ]
  for (const [args, first] of cases) {
    const r = await cli(args)
    t.notOk(r.timedOut, `${args.join(' ')} exits on its own`)
    t.equal(r.code, 2, `${args.join(' ')} exits 2`)
    t.match(r.stderr.split('\n')[0], first, `${args.join(' ')}: the reason first`)
    t.match(r.stderr, /\n\n(crossdock —|Usage: crossdock)/, 'then the usage')
    t.notMatch(r.stdout, /configuration ok/)
  }
})

t.test('serve: each start-up failure is one line and a quick exit', async t => {
  const busy = await busyPort(t)
  mkdirSync(join(dir, 'half-ca'), { recursive: true })
  writeFileSync(join(dir, 'half-ca', 'ca.crt'), 'x')
  writeFileSync(join(dir, 'a-file'), 'x')
  rpardiniCa(join(dir, 'rp-ca'))
  const d = (p: string): string => join(dir, p)
  const cases: Array<[string, Record<string, string>, string]> = [
    ['equal ports', { PROXY_PORT: '3999', REGISTRY_PORT: '3999' }, 'REGISTRY_PORT="3999": expected a port other than PROXY_PORT (3999); the two doors need a port each'],
    ['proxy port in use', { PROXY_PORT: String(busy) }, `PROXY_PORT=${busy}: cannot listen on 127.0.0.1:${busy}: the port is already in use; stop what uses it or choose another port (EADDRINUSE)`],
    ['registry port in use', { REGISTRY_PORT: String(busy) }, `REGISTRY_PORT=${busy}: cannot listen on 127.0.0.1:${busy}: the port is already in use; stop what uses it or choose another port (EADDRINUSE)`],
    ['LISTEN_HOST not an IP', { LISTEN_HOST: 'not-an-ip' }, 'LISTEN_HOST="not-an-ip": expected an IP address of this host such as 0.0.0.0, 127.0.0.1 or ::'],
    ['LISTEN_HOST not ours', { LISTEN_HOST: '10.9.9.9' }, 'LISTEN_HOST=10.9.9.9: not an address of this host (it has '],
    ['CA_DIR parent missing', { CA_DIR: d('nope/ca') }, `CA_DIR=${d('nope/ca')}: its parent directory ${d('nope')} does not exist; create it, or fix the path`],
    ['CACHE_DIR parent missing', { CACHE_DIR: d('nope/cache') }, `CACHE_DIR=${d('nope/cache')}: its parent directory ${d('nope')} does not exist; create it, or fix the path`],
    ['REGISTRY_STORAGE_DIR a file', { REGISTRY_STORAGE_DIR: d('a-file') }, `REGISTRY_STORAGE_DIR=${d('a-file')}: expected a directory, found a file`],
    ['half a CA', { CA_DIR: d('half-ca') }, `CA_DIR: ${d('half-ca/ca.crt')} exists but ${d('half-ca/ca.key')} does not; restore it, or remove ${d('half-ca/ca.crt')} to create a new root CA`],
    ['CA files missing', { CA_CRT_FILE: d('no.crt'), CA_KEY_FILE: d('no.key') }, `cannot read the CA certificate: ${d('no.crt')}: does not exist`],
    ['wrong CA passphrase', { CA_DIR: d('rp-ca'), CA_KEY_PASSPHRASE: 'wrong' }, `${d('rp-ca/ca.key')}: the encrypted CA key does not open with CA_KEY_PASSPHRASE; check its value`],
    ['HTPASSWD_FILE missing', { HTPASSWD_FILE: d('htpasswd') }, `HTPASSWD_FILE=${d('htpasswd')}: cannot read it: does not exist`],
    ['REDIS_URL without a bucket', { REDIS_URL: 'redis://:s3cret@127.0.0.1:6379' }, REDIS_WITH_FS],
  ]
  for (const [name, extra, message] of cases) {
    const started = Date.now()
    const r = await cli(['serve'], extra)
    t.notOk(r.timedOut, `${name}: exits on its own (${Date.now() - started} ms)`)
    t.equal(r.code, 2, `${name}: exit 2`)
    const lines = r.stderr.split('\n').filter(l => l !== '')
    t.equal(lines.length, 1, `${name}: one line on stderr: ${r.stderr}`)
    t.ok(lines[0]?.startsWith(`crossdock: configuration error: ${message}`), `${name}: ${lines[0] ?? ''}`)
    t.notMatch(r.stderr, 's3cret', `${name}: no secret on stderr`)
  }
})

t.test('files owned by another uid: one line saying what to chown', { skip: process.getuid?.() === 0 ? false : 'needs root to run as uid 10001' }, async t => {
  const base = join(dir, 'owned')
  rpardiniCa(join(base, 'ca'))
  chmodSync(join(base, 'ca', 'ca.key'), 0o600) // root's, as in rpardini's volume
  for (const sub of ['cache', 'registry']) { mkdirSync(join(base, sub)); chownSync(join(base, sub), 10001, 10001) }
  chmodSync(base, 0o755)
  const as10001 = { uid: 10001, gid: 10001 }
  const volumes = { CA_DIR: join(base, 'ca'), CACHE_DIR: join(base, 'cache'), REGISTRY_STORAGE_DIR: join(base, 'registry') }
  const r = await cli(['serve'], volumes, as10001)
  t.equal(r.code, 2)
  t.equal(r.stderr, `crossdock: configuration error: cannot read the CA private key: ${join(base, 'ca', 'ca.key')}: permission denied (owned by uid 0, crossdock runs as uid 10001: chown 10001:10001 ${join(base, 'ca', 'ca.key')} (or run crossdock as its owner))\n`)
  const check = await cli(['config', 'check'], volumes, as10001)
  t.equal(check.code, 2, 'config check finds it too')
  t.match(check.stderr, 'chown 10001:10001')
  const noCa = await cli(['config', 'check'], { ...volumes, CA_DIR: join(base, 'cache', 'ca'), CACHE_DIR: join(base, 'ca') }, as10001)
  t.match(noCa.stderr, `CACHE_DIR=${join(base, 'ca')}: the directory is not writable (owned by uid 0, crossdock runs as uid 10001: chown 10001:10001 ${join(base, 'ca')}`)
})

t.test('config check finds without listening what serve would fail on', async t => {
  const equal = await cli(['config', 'check'], { PROXY_PORT: '5000', REGISTRY_PORT: '5000' })
  t.equal(equal.code, 2)
  t.equal(equal.stderr, 'crossdock: configuration error: REGISTRY_PORT="5000": expected a port other than PROXY_PORT (5000); the two doors need a port each\n')
  const d = (p: string): string => join(dir, p)
  const r = await cli(['config', 'check'], { CA_CRT_FILE: d('no.crt'), CA_KEY_FILE: d('no.key'), HTPASSWD_FILE: d('htpasswd'), CACHE_DIR: d('nope/cache') })
  t.equal(r.code, 2)
  t.notMatch(r.stdout, /configuration ok/)
  t.same(r.stderr.split('\n').filter(l => l !== ''), [
    `crossdock: configuration error: CACHE_DIR=${d('nope/cache')}: its parent directory ${d('nope')} does not exist; create it, or fix the path`,
    `crossdock: configuration error: cannot read the CA certificate: ${d('no.crt')}: does not exist`,
    `crossdock: configuration error: HTPASSWD_FILE=${d('htpasswd')}: cannot read it: does not exist`,
  ])
  const redis = await cli(['config', 'check'], { REDIS_URL: 'redis://:s3cret@127.0.0.1:6379' })
  t.equal(redis.code, 2)
  t.equal(redis.stderr, `crossdock: configuration error: ${REDIS_WITH_FS}\n`, 'REDIS_URL with STORAGE=fs: the same line as serve')
  t.notMatch(redis.stdout, 's3cret')
  const ok = await cli(['config', 'check'])
  t.equal(ok.code, 0, ok.stderr)
  t.match(ok.stdout, /configuration ok\n$/)
})

t.test('rpardini\'s /ca volume as it is: the encrypted key opens with foobar', async t => {
  for (const traditional of [true, false]) {
    const caDir = join(dir, `rpardini-${traditional ? 'traditional' : 'pkcs8'}`)
    rpardiniCa(caDir, { traditional })
    t.match(readFileSync(join(caDir, 'ca.key'), 'utf8'), traditional ? 'Proc-Type: 4,ENCRYPTED' : 'BEGIN ENCRYPTED PRIVATE KEY')
    const r = await cli(['config', 'check'], { CA_DIR: caDir, CA_SRL_FILE: join(caDir, 'ca.srl') })
    t.equal(r.code, 0, r.stderr)
    t.match(r.stdout, 'warning: CA_SRL_FILE is not implemented: certificate serial numbers are random, so no serial file is read or written\n')
    const served = await serveUntilListening({ ...env, CA_DIR: caDir })
    t.equal(served.code, 0, 'served, then stopped by SIGTERM')
    t.ok(served.lines.some(l => l.msg === 'reusing the root CA' && l.caFile === join(caDir, 'ca.crt')), 'serve uses the rpardini CA')
  }
})

t.test('serve logs: a warning per unimplemented rpardini variable, the banner, no duplicate keys', async t => {
  const unimplemented = ['PROXY_REQUEST_BUFFERING', 'SEND_TIMEOUT', 'CLIENT_BODY_TIMEOUT', 'PROXY_SEND_TIMEOUT', 'DEBUG', 'DEBUG_HUB', 'DEBUG_NGINX', 'CA_SRL_FILE']
  const r = await serveUntilListening({ ...env, CA_DIR: join(dir, 'banner-ca'), ...Object.fromEntries(unimplemented.map(n => [n, 'false'])), PROXY_CONNECT_READ_TIMEOUT: '60s' })
  t.equal(r.code, 0)
  const warnings = r.lines.filter(l => l.level === 40)
  t.same(warnings.map(l => l.variable), unimplemented, 'one warning each, in table order')
  for (const w of warnings) t.match(w.msg, new RegExp(`^${String(w.variable)} \\(docker-registry-proxy\\) is not implemented: \\S`))
  for (const raw of r.raw) t.equal(JSON.stringify(JSON.parse(raw)).length, raw.length, `no duplicate keys: ${raw.slice(0, 80)}`)
  const listening = r.lines.find(l => typeof l.proxy === 'string')
  const proxy = String(listening?.proxy)
  t.match(listening?.msg, new RegExp(`^crossdock listening: proxy door 127\\.0\\.0\\.1:\\d+, registry door 127\\.0\\.0\\.1:\\d+ \\(version ${VERSION.replace(/\./g, '\\.')}\\)$`))
  t.ok(r.lines.some(l => l.msg === 'intercepting registry-1.docker.io auth.docker.io index.docker.io docker.io registry.k8s.io gcr.io quay.io ghcr.io (REGISTRIES)'), 'intercepted registries')
  const setup = r.lines.find(l => 'caUrl' in l)
  t.equal(setup?.caUrl, `http://${proxy}/ca.crt`)
  t.equal(setup?.setup, `curl -fsS http://${proxy}/setup/systemd | sudo sh`)

  const pretty = await serveUntilListening({ ...env, CA_DIR: join(dir, 'banner-ca'), LOG_FORMAT: 'pretty' })
  t.equal(pretty.code, 0)
  t.notOk(pretty.raw.some(l => l.startsWith('{')), 'no JSON lines')
  t.ok(pretty.raw.some(l => /^\d\d:\d\d:\d\d\.\d{3} INFO {2}tls: reusing the root CA {2}caFile=/.test(l)), 'time, level, module: message, fields')
  t.ok(pretty.raw.some(l => /^\d\d:\d\d:\d\d\.\d{3} INFO {2}crossdock listening: proxy door /.test(l)))
})

/** `crossdock serve` until its banner is out, then SIGTERM; every stdout line (parsed when JSON). */
async function serveUntilListening (serveEnv: Record<string, string>): Promise<{ code: number | null, raw: string[], lines: Array<Record<string, unknown> & { msg?: string }> }> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'serve'], { env: { PATH: process.env.PATH ?? '', ...serveEnv }, stdio: ['ignore', 'pipe', 'pipe'] })
    const raw: string[] = []
    let buf = ''
    let stderr = ''
    const killer = setTimeout(() => child.kill('SIGKILL'), EXITS_WITHIN)
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString()
      const parts = buf.split('\n')
      buf = parts.pop() ?? ''
      for (const line of parts) {
        raw.push(line)
        // The setup hint is the banner's last line.
        if (line.includes('/setup/systemd')) child.kill('SIGTERM')
      }
    })
    child.once('error', reject)
    child.once('close', code => {
      clearTimeout(killer)
      if (stderr !== '') raw.push(`stderr: ${stderr}`)
      resolve({ code, raw, lines: raw.map(l => { try { return JSON.parse(l) } catch { return { msg: l } } }) })
    })
  })
}
