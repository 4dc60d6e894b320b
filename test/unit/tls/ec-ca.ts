/** Test helper: an operator-style EC (P-256) CA made with openssl in `dir`; returns its file paths. */
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'

export function writeEcCa (dir: string): { caCrtFile: string, caKeyFile: string } {
  const caCrtFile = join(dir, 'ec.crt')
  const caKeyFile = join(dir, 'ec.key')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '30',
    '-keyout', caKeyFile, '-out', caCrtFile, '-subj', '/CN=crossdock test EC CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'], { stdio: 'ignore' })
  return { caCrtFile, caKeyFile }
}
