/**
 * What `warm`, `export` and `import` share: they are clients of a running crossdock's registry door
 * (`--registry`, default this host's REGISTRY_PORT), authenticated with `--creds` or `--creds-file`
 * when the server has HTPASSWD_FILE, with a progress line on a terminal and plain lines otherwise.
 */
import { readFileSync } from 'node:fs'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { loadConfig } from '../config/index.js'
import { RegistryClient } from '../client/registry-client.js'
import { createProgress, formatBytes, UsageError } from './command.js'
import type { BundleProgress } from '../bundle/exporter.js'

type Options = NonNullable<ParseArgsConfig['options']>

export const CLIENT_OPTIONS = {
  registry: { type: 'string' },
  creds: { type: 'string' },
  'creds-file': { type: 'string' },
} as const satisfies Options

export const CLIENT_HELP = `  --registry <url>     the crossdock registry door (default http://127.0.0.1:$REGISTRY_PORT)
  --creds <user:pass>  credentials when the server has HTPASSWD_FILE (visible in ps: prefer --creds-file)
  --creds-file <path>  the same, read from the first line of a file (kept out of ps and shell history)
`

/** Options and positionals, strictly (an unknown flag is a usage error). */
export function parseWithPositionals<O extends Options> (args: string[], options: O) {
  try {
    return parseArgs({ args, options, strict: true as const, allowPositionals: true as const })
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}

export function clientFrom (values: { registry?: string | boolean, creds?: string | boolean, 'creds-file'?: string | boolean }): RegistryClient {
  let baseUrl: string
  if (typeof values.registry === 'string') {
    let url: URL
    try { url = new URL(values.registry.includes('://') ? values.registry : `http://${values.registry}`) } catch { throw new UsageError(`--registry ${JSON.stringify(values.registry)} is not a URL (http://host:port)`) }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--registry ${JSON.stringify(values.registry)}: expected http:// or https://`)
    baseUrl = url.origin
  } else {
    const config = loadConfig()
    baseUrl = `${config.registryTlsCert === undefined ? 'http' : 'https'}://127.0.0.1:${config.registryPort}`
  }
  let authorization: string | undefined
  const creds = credsFrom(values)
  if (creds !== undefined) authorization = `Basic ${Buffer.from(creds).toString('base64')}`
  return new RegistryClient({ baseUrl, authorization })
}

function credsFrom (values: { creds?: string | boolean, 'creds-file'?: string | boolean }): string | undefined {
  const file = values['creds-file']
  if (typeof values.creds === 'string' && typeof file === 'string') throw new UsageError('--creds and --creds-file: give one')
  if (typeof values.creds === 'string') {
    if (!values.creds.includes(':')) throw new UsageError('--creds expects user:password')
    return values.creds
  }
  if (typeof file !== 'string') return undefined
  let text: string
  try { text = readFileSync(file, 'utf8') } catch (err) { throw new UsageError(`--creds-file ${JSON.stringify(file)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`) }
  const line = text.split('\n')[0].replace(/\r$/, '')
  // Never echo the file's content: it is a password.
  if (!line.includes(':')) throw new UsageError(`--creds-file ${JSON.stringify(file)}: expected user:password on its first line`)
  return line
}

/** Progress on stderr when it is a terminal; finished items as plain lines on stdout either way. */
export function bundleProgress (): BundleProgress & { done: () => void } {
  const bar = createProgress()
  return {
    bytes: (done, total, what) => { bar.update(`${formatBytes(done)} / ${formatBytes(total)}  ${total === 0 ? 100 : Math.floor(done * 100 / total)}%  ${what.slice(0, 19)}`) },
    line: text => { bar.done(); process.stdout.write(`${text}\n`) },
    done: () => { bar.done() },
  }
}
