/**
 * Everything about a configuration that can be checked without listening: the directories exist or
 * can be created, the CA and the htpasswd file (and the other files named by variables) are
 * readable and valid. `crossdock config check` prints every problem; `serve` stops at the first,
 * one line, before anything listens (ports are checked by listening: see listenProblem).
 */
import { constants } from 'node:fs'
import { access, readFile, stat } from 'node:fs/promises'
import { networkInterfaces } from 'node:os'
import { dirname } from 'node:path'
import tls from 'node:tls'
import type { Config } from '../config/index.js'
import { ConfigError } from '../errors.js'
import { loadExistingCa } from '../tls/ca.js'
import { parseHtpasswd } from '../auth/htpasswd-file.js'
import { accessProblem, ownership } from '../util/file-access.js'

/** One sentence per problem; empty when `serve` would get past its own checks. */
export async function preflightProblems (config: Config): Promise<string[]> {
  const problems: string[] = []
  const check = async (fn: () => Promise<void>): Promise<void> => {
    try { await fn() } catch (err) { problems.push(err instanceof ConfigError ? err.message : String((err as Error).message)) }
  }
  // Linux answers on all of 127.0.0.0/8 though `lo` lists only 127.0.0.1.
  if (!['0.0.0.0', '::'].includes(config.listenHost) && !config.listenHost.startsWith('127.') && !localAddresses().includes(config.listenHost)) {
    problems.push(`LISTEN_HOST=${config.listenHost}: not an address of this host (it has ${localAddresses().join(', ')}); use one of them, or 0.0.0.0 for all`)
  }
  for (const [name, dir] of [['CACHE_DIR', config.cacheDir], ['REGISTRY_STORAGE_DIR', config.registryStorageDir]]) await check(async () => { await usableDirectory(name, dir) })
  // An existing CA only needs to be readable (rpardini's /ca is root's); CA_DIR must be writable
  // only when the CA is still to be created there.
  await check(async () => {
    const existing = await loadExistingCa({ caDir: config.caDir, caCrtFile: config.caCrtFile, caKeyFile: config.caKeyFile, caKeyPassphrase: config.caKeyPassphrase })
    if (existing === undefined) await usableDirectory('CA_DIR', config.caDir)
  })
  if (config.htpasswdFile !== undefined) {
    const file = config.htpasswdFile
    await check(async () => { parseHtpasswd(await readable('HTPASSWD_FILE', file), file) })
  }
  if (config.upstreamCaFile !== undefined) {
    const file = config.upstreamCaFile
    await check(async () => { if (!(await readable('UPSTREAM_CA_FILE', file)).includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError(`UPSTREAM_CA_FILE=${file}: expected PEM certificates (-----BEGIN CERTIFICATE-----)`) })
  }
  if (config.registryTlsCert !== undefined && config.registryTlsKey !== undefined) {
    const [certFile, keyFile] = [config.registryTlsCert, config.registryTlsKey]
    await check(async () => {
      const [cert, key] = [await readable('REGISTRY_TLS_CERT', certFile), await readable('REGISTRY_TLS_KEY', keyFile)]
      try { tls.createSecureContext({ cert, key }) } catch (err) { throw new ConfigError(`REGISTRY_TLS_CERT=${certFile}, REGISTRY_TLS_KEY=${keyFile}: expected a PEM certificate and its private key (${(err as Error).message})`) }
    })
  }
  return problems
}

function localAddresses (): string[] {
  return Object.values(networkInterfaces()).flatMap(list => (list ?? []).map(i => i.address))
}

/** Throws the first problem as a ConfigError. */
export async function preflight (config: Config): Promise<void> {
  const [first] = await preflightProblems(config)
  if (first !== undefined) throw new ConfigError(first)
}

/**
 * A directory crossdock writes: it exists and is writable, or it can be created in an existing,
 * writable parent. A missing parent is refused rather than created: a typo in a volume path would
 * otherwise start with an empty cache, or a new CA no client trusts.
 */
async function usableDirectory (name: string, dir: string): Promise<void> {
  const st = await stat(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw new ConfigError(`${name}=${dir}: ${accessProblem(dir, err).slice(dir.length + 2)}`)
  })
  if (st !== undefined) {
    if (!st.isDirectory()) throw new ConfigError(`${name}=${dir}: expected a directory, found a file`)
    try { await access(dir, constants.R_OK | constants.W_OK | constants.X_OK) } catch {
      throw new ConfigError(`${name}=${dir}: the directory is not writable (${ownership(dir)})`)
    }
    return
  }
  const parent = dirname(dir)
  const pst = await stat(parent).catch(() => undefined)
  if (pst === undefined || !pst.isDirectory()) throw new ConfigError(`${name}=${dir}: its parent directory ${parent} does not exist; create it, or fix the path`)
  try { await access(parent, constants.W_OK | constants.X_OK) } catch {
    throw new ConfigError(`${name}=${dir}: does not exist and cannot be created in ${parent} (${ownership(parent)})`)
  }
}

async function readable (name: string, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    throw new ConfigError(`${name}=${file}: cannot read it: ${accessProblem(file, err).slice(file.length + 2)}`)
  }
}
