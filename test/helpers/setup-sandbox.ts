/**
 * A new host for the served setup script, without touching this machine: a private mount namespace
 * (unshare --mount) where the paths the script writes are bind mounts of directories under `root`:
 *
 *   /etc/systemd/system               ← root/systemd          (the drop-in lands here)
 *   /usr/local/share/ca-certificates  ← root/local-ca         (copy of the real one)
 *   /etc/ssl/certs                    ← root/ssl-certs        (copy; update-ca-certificates rebuilds it)
 *   /etc/ca-certificates/update.d     ← root/empty            (no hooks: the Java one writes to /var)
 *   /etc/hosts                        ← root/hosts            (when `hosts` is given)
 *
 * `systemctl` is a fake on PATH that records its arguments in root/systemctl.log. The real
 * update-ca-certificates runs, unless `failingCaUpdate` puts a failing one first on PATH.
 * `command` is run by /bin/sh -c inside, e.g. `curl -fsS http://…/setup/systemd | sh`.
 */
import { spawn } from 'node:child_process'
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface SandboxRun { code: number | null, stdout: string, stderr: string, systemctl: string[] }

export interface SetupSandbox {
  root: string
  dropIn: (unit: string) => string
  /** The system bundle as the sandboxed host now has it. */
  bundle: string
  run: (command: string, opts?: { failingCaUpdate?: boolean }) => Promise<SandboxRun>
}

export function createSetupSandbox (root: string, opts: { hosts?: string } = {}): SetupSandbox {
  const d = { systemd: join(root, 'systemd'), localCa: join(root, 'local-ca'), certs: join(root, 'ssl-certs'), empty: join(root, 'empty'), bin: join(root, 'bin'), failBin: join(root, 'fail-bin') }
  for (const dir of Object.values(d)) mkdirSync(dir, { recursive: true })
  cpSync('/usr/local/share/ca-certificates', d.localCa, { recursive: true })
  cpSync('/etc/ssl/certs', d.certs, { recursive: true, verbatimSymlinks: true })
  writeFileSync(join(d.bin, 'systemctl'), `#!/bin/sh\necho "$*" >> '${root}/systemctl.log'\n`)
  writeFileSync(join(d.failBin, 'update-ca-certificates'), '#!/bin/sh\necho "update-ca-certificates: simulated failure" >&2\nexit 1\n')
  chmodSync(join(d.bin, 'systemctl'), 0o755)
  chmodSync(join(d.failBin, 'update-ca-certificates'), 0o755)
  const binds: Array<[string, string]> = [[d.systemd, '/etc/systemd/system'], [d.localCa, '/usr/local/share/ca-certificates'], [d.certs, '/etc/ssl/certs'], [d.empty, '/etc/ca-certificates/update.d']]
  if (opts.hosts !== undefined) {
    writeFileSync(join(root, 'hosts'), opts.hosts)
    binds.push([join(root, 'hosts'), '/etc/hosts'])
  }
  const mounts = binds.map(([from, to]) => `mount --bind '${from}' '${to}'`).join(' && ')
  return {
    root,
    dropIn: unit => join(d.systemd, `${unit}.service.d`, 'http-proxy.conf'),
    bundle: join(d.certs, 'ca-certificates.crt'),
    run: async (command, o = {}) => await new Promise((resolve, reject) => {
      const log = join(root, 'systemctl.log')
      writeFileSync(log, '')
      const path = [...(o.failingCaUpdate === true ? [d.failBin] : []), d.bin, process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'].join(':')
      const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `${mounts} && exec sh -c "$0"`, command], { env: { PATH: path }, stdio: ['ignore', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
      child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
      child.once('error', reject)
      child.once('close', code => resolve({ code, stdout, stderr, systemctl: existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(l => l !== '') : [] }))
    }),
  }
}
