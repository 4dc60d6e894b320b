/**
 * `crossdock ca info` and `crossdock ca export`: the root CA clients must trust, read from where
 * `serve` keeps it (CA_CRT_FILE, else CA_DIR/ca.crt). Read-only: neither creates a CA (only `serve`
 * does, on first start) and neither ever reads the private key.
 */
import { X509Certificate } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { loadConfig } from '../config/index.js'
import { caCertFile } from '../tls/ca.js'
import { parseOptions, type Command } from './command.js'

async function readCa (): Promise<{ path: string, cert: X509Certificate } | { path: string, missing: string }> {
  const config = loadConfig()
  const path = caCertFile(config)
  let pem: string
  try {
    pem = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    return { path, missing: config.caCrtFile !== undefined ? 'CA_CRT_FILE names a file that does not exist' : '`crossdock serve` creates it on first start' }
  }
  return { path, cert: new X509Certificate(pem) }
}

export const caInfo: Command = {
  summary: 'Show the root CA: subject, SHA-256 fingerprint, validity, file.',
  help: `Usage: crossdock ca info [--json]

Prints the root CA clients must trust (CA_CRT_FILE, else CA_DIR/ca.crt): subject, SHA-256
fingerprint (compare with \`openssl x509 -noout -fingerprint -sha256 -in FILE\` on a client),
validity and path. Exit 1 when there is no CA yet.
`,
  run: async (args) => {
    const opts = parseOptions(args, { json: { type: 'boolean' } })
    const ca = await readCa()
    if ('missing' in ca) {
      process.stderr.write(`crossdock: no root CA at ${ca.path} (${ca.missing})\n`)
      return 1
    }
    const info = {
      subject: ca.cert.subject.replace(/\n/g, ', '),
      fingerprintSha256: ca.cert.fingerprint256,
      notBefore: new Date(ca.cert.validFrom).toISOString(),
      notAfter: new Date(ca.cert.validTo).toISOString(),
      path: ca.path,
    }
    if (opts.json === true) {
      process.stdout.write(`${JSON.stringify(info, null, 2)}\n`)
      return 0
    }
    process.stdout.write([
      `subject:      ${info.subject}`,
      `sha256:       ${info.fingerprintSha256}`,
      `not before:   ${info.notBefore}`,
      `not after:    ${info.notAfter}`,
      `path:         ${info.path}`,
      '',
    ].join('\n'))
    return 0
  },
}

export const caExport: Command = {
  summary: 'Print the root CA certificate (PEM) to stdout.',
  help: `Usage: crossdock ca export > crossdock-ca.crt

Writes the root CA certificate, PEM, to stdout: what clients install (also served at
http://PROXY:3128/ca.crt). Never the key. Exit 1 when there is no CA yet.
`,
  run: async (args) => {
    parseOptions(args, {})
    const ca = await readCa()
    if ('missing' in ca) {
      process.stderr.write(`crossdock: no root CA at ${ca.path} (${ca.missing})\n`)
      return 1
    }
    // The parsed certificate re-encoded, not the file: a file that also held a key never leaks it.
    process.stdout.write(ca.cert.toString())
    return 0
  },
}
