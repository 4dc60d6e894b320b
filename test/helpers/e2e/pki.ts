/**
 * The committed TEST-ONLY PKI (test/fixtures, see its README) and the trust files clients need.
 *
 * Go clients (dockerd, skopeo, ctr) read SSL_CERT_FILE *instead of* the system bundle, so a client
 * bundle is the system bundle plus the CA under test. skopeo's --cert-dir wants a directory where
 * `*.crt` files are CAs.
 */
import { mkdirSync, readFileSync, writeFileSync, copyFileSync, existsSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Scope } from './scope.js'

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
const FIXTURES = join(REPO_ROOT, 'test/fixtures')

export const FIXTURE = {
  /** Root CA that signed `upstreamCert` (the fake upstream registries). */
  testCa: join(FIXTURES, 'test-ca.crt'),
  /** Leaf for Docker Hub's, ghcr.io's … hosts, `*.test` and IPs 127.0.0.10–60. */
  upstreamCert: join(FIXTURES, 'upstream.crt'),
  upstreamKey: join(FIXTURES, 'upstream.key'),
  /** An unrelated CA and a leaf it signed (same SANs), for "someone else's certificate" tests. */
  otherCa: join(FIXTURES, 'other-ca.crt'),
  otherCert: join(FIXTURES, 'other.crt'),
  otherKey: join(FIXTURES, 'other.key'),
} as const

export const SYSTEM_BUNDLE = '/etc/ssl/certs/ca-certificates.crt'

/** Writes `file` = system CA bundle + each of `caFiles`; returns `file`. */
export function writeClientBundle (file: string, ...caFiles: string[]): string {
  mkdirSync(dirname(file), { recursive: true })
  const system = existsSync(SYSTEM_BUNDLE) ? readFileSync(SYSTEM_BUNDLE, 'utf8') : ''
  writeFileSync(file, [system, ...caFiles.map(f => readFileSync(f, 'utf8'))].map(s => s.trimEnd() + '\n').join(''))
  return file
}

/** Writes a skopeo/containers cert dir holding `caFile` as `ca.crt`; returns the dir. */
export function writeCertDir (dir: string, caFile: string): string {
  mkdirSync(dir, { recursive: true })
  copyFileSync(caFile, join(dir, 'ca.crt'))
  return dir
}

/** A cert dir under the scope for `caFile` (one per CA file), e.g. for `skopeo --cert-dir`. */
export function certDirFor (scope: Scope, caFile: string): string {
  return writeCertDir(scope.path('cert-dirs', createHash('sha256').update(caFile).digest('hex').slice(0, 12)), caFile)
}
