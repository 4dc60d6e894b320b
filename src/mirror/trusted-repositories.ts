/**
 * Upstream repositories the operator vouched for by importing them into the cache (`crossdock import
 * --into cache`, authorised like a push): the access policy serves their cached content to every
 * client without asking the upstream — an air-gapped crossdock has none to ask.
 *
 * Kept in one text file beside the cache (`CACHE_DIR/imported-repositories`, one `host/repository`
 * a line, appended), so a restart does not turn an air-gapped site's imported images into 503s.
 * Appends of one short line are atomic on a local file system; a line cut by a crash is ignored.
 */
import { appendFile, readFile } from 'node:fs/promises'

export class TrustedRepositories {
  private constructor (private readonly file: string | undefined, private readonly keys: Set<string>) {}

  /** Reads `file` (a missing file is an empty list); without a file, the list lives in memory. */
  static async open (file?: string): Promise<TrustedRepositories> {
    const keys = new Set<string>()
    if (file !== undefined) {
      const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return ''; throw err })
      const lines = text.split('\n')
      // The last element is what follows the final newline: empty, or a line a crash cut short.
      for (const line of lines.slice(0, -1)) if (line.includes('/')) keys.add(line)
    }
    return new TrustedRepositories(file, keys)
  }

  has (host: string, repository: string): boolean {
    return this.keys.has(keyOf(host, repository))
  }

  /** Resolves once the entry is on disk, so an import that succeeded survives a restart. */
  async add (host: string, repository: string): Promise<void> {
    const key = keyOf(host, repository)
    if (this.keys.has(key)) return
    if (this.file !== undefined) await appendFile(this.file, `${key}\n`, { mode: 0o600 })
    this.keys.add(key)
  }
}

function keyOf (host: string, repository: string): string {
  return `${host.toLowerCase()}/${repository}`
}
