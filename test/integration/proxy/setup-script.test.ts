// /setup/systemd run as a new host runs it (`curl … | sh`, and `| bash`), in a sandbox: the real
// update-ca-certificates into a private copy of the trust store, a fake systemctl, the drop-in in a
// temporary /etc/systemd/system (test/helpers/setup-sandbox.ts). What the host ends up with is
// checked byte for byte; a failed CA step must leave the service untouched.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { startApp, type StartedApp } from '../../helpers/start-app.js'
import { createSetupSandbox } from '../../helpers/setup-sandbox.js'

const CAN_SANDBOX = process.getuid?.() === 0 && spawnsOk('unshare', ['--mount', 'true'])
let app: StartedApp
let url: string

function spawnsOk (cmd: string, args: string[]): boolean {
  try { execFileSync(cmd, args, { stdio: 'ignore' }); return true } catch { return false }
}

async function get (path: string): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: app.proxyPort, path }, res => {
      let body = ''
      res.on('data', d => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    }).on('error', reject)
  })
}

function dropInLines (proxy: string, noProxy: string): string {
  return `[Service]\nEnvironment="HTTPS_PROXY=${proxy}/"\nEnvironment="NO_PROXY=${noProxy}"\n`
}

t.before(async () => {
  app = await startApp()
  url = `http://127.0.0.1:${app.proxyPort}`
})
t.teardown(async () => { await app.stop() })

t.test('an unknown ?service= or a bad ?no_proxy= is a 400 that says what is accepted', async t => {
  const crio = await get('/setup/systemd?service=crio')
  t.equal(crio.status, 400)
  t.equal(crio.body, 'crossdock: ?service=crio is not supported; use one of docker, containerd, k3s, k3s-agent, rke2, rke2-server, rke2-agent (CRI-O: see the README)\n')
  const bad = await get('/setup/systemd?no_proxy=%27%3Brm%20-rf')
  t.equal(bad.status, 400)
  t.match(bad.body, /^crossdock: \?no_proxy= entries must be host names/)
})

t.test('the script as a new host runs it', { skip: CAN_SANDBOX ? false : 'needs root and unshare --mount' }, async t => {
  const root = mkdtempSync(join(tmpdir(), 'crossdock-setup-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const box = createSetupSandbox(root)
  const caBody = app.caPem.trim()

  for (const shell of ['sh', 'bash']) {
    t.test(`curl … | ${shell}: CA first, then the drop-in, then a restart`, async t => {
      rmSync(dirname(box.dropIn('docker')), { recursive: true, force: true })
      const r = await box.run(`curl -fsS ${url}/setup/systemd | ${shell}`)
      t.equal(r.code, 0, r.stderr)
      t.equal(r.stderr, '')
      t.ok(readFileSync(box.bundle, 'utf8').includes(caBody), 'the system bundle now holds the crossdock CA')
      t.equal(readFileSync(box.dropIn('docker'), 'utf8'), dropInLines(url, 'localhost,127.0.0.0/8,::1,127.0.0.1,.svc,.svc.cluster.local,.cluster.local'))
      t.same(r.systemctl, ['cat docker.service', 'daemon-reload', 'restart docker'])
    })
  }

  t.test('an existing drop-in is kept as a backup', async t => {
    const dropIn = box.dropIn('docker')
    writeFileSync(dropIn, '[Service]\nEnvironment="HTTPS_PROXY=http://old:3128/"\n')
    const r = await box.run(`curl -fsS ${url}/setup/systemd | sh`)
    t.equal(r.code, 0, r.stderr)
    const backups = readdirSync(dirname(dropIn)).filter(f => f.startsWith('http-proxy.conf.bak-'))
    t.equal(backups.length, 1, `one backup: ${backups.join(', ')}`)
    t.equal(readFileSync(join(dirname(dropIn), backups[0]), 'utf8'), '[Service]\nEnvironment="HTTPS_PROXY=http://old:3128/"\n', 'with the old bytes')
    t.match(r.stdout, 'kept the previous drop-in as /etc/systemd/system/docker.service.d/http-proxy.conf.bak-')
    t.equal(readFileSync(dropIn, 'utf8').split('\n')[1], `Environment="HTTPS_PROXY=${url}/"`)
  })

  t.test('a failed CA step leaves the service as it was', async t => {
    const dropIn = box.dropIn('containerd')
    const r = await box.run(`curl -fsS '${url}/setup/systemd?service=containerd' | sh`, { failingCaUpdate: true })
    t.equal(r.code, 1)
    t.equal(r.stderr, 'update-ca-certificates: simulated failure\ncrossdock setup: update-ca-certificates failed; containerd is unchanged\n')
    t.notOk(existsSync(dropIn), 'no drop-in written')
    t.same(r.systemctl, ['cat containerd.service'], 'no daemon-reload, no restart')
  })

  t.test('k3s and rke2 units, cluster networks and ?no_proxy=', async t => {
    for (const [service, unit] of [['k3s', 'k3s'], ['rke2', 'rke2-server'], ['containerd', 'containerd']]) {
      const r = await box.run(`curl -fsS '${url}/setup/systemd?service=${service}&no_proxy=corp.internal,10.1.0.0/16' | sh`)
      t.equal(r.code, 0, r.stderr)
      const cluster = unit === 'containerd' ? '' : ',10.42.0.0/16,10.43.0.0/16'
      t.equal(readFileSync(box.dropIn(unit), 'utf8'), dropInLines(url, `localhost,127.0.0.0/8,::1,127.0.0.1,.svc,.svc.cluster.local,.cluster.local${cluster},corp.internal,10.1.0.0/16`), unit)
      t.same(r.systemctl, [`cat ${unit}.service`, 'daemon-reload', `restart ${unit}`])
    }
  })

  t.test('the sandbox kept the real trust store untouched', async t => {
    t.notOk(readFileSync('/etc/ssl/certs/ca-certificates.crt', 'utf8').includes(caBody))
    t.notOk(existsSync('/etc/systemd/system/docker.service.d/http-proxy.conf') && readFileSync('/etc/systemd/system/docker.service.d/http-proxy.conf', 'utf8').includes(url))
    mkdirSync(root, { recursive: true })
  })
})
