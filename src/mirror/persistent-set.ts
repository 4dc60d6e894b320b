/**
 * A set of short strings kept across restarts in one text file beside the cache, one entry a line,
 * appended. The access policy keeps three:
 *   CACHE_DIR/imported-repositories  `host/repository`s the operator vouched for with `crossdock import
 *                                    --into cache`: served to every client without asking the upstream
 *                                    (an air-gapped crossdock has none to ask);
 *   CACHE_DIR/public-repositories    `host/repository`s an upstream once served anonymously: served
 *                                    when the upstream cannot answer the access check (down, 5xx,
 *                                    429), so an outage, or a restart during one, does not turn cached
 *                                    public images into 503s;
 *   CACHE_DIR/restricted-digests     digests filled with a client's credentials from a repository not
 *                                    known public: never served by that fallback, whatever repository
 *                                    names them (a public one must not become a side door).
 * Appends of one short line are atomic on a local file system; a line cut by a crash is ignored.
 */
import { appendFile, readFile } from 'node:fs/promises'

export class PersistentSet {
  private constructor (private readonly file: string | undefined, private readonly keys: Set<string>) {}

  /** Reads `file` (a missing file is an empty set); without a file, the set lives in memory. */
  static async open (file?: string): Promise<PersistentSet> {
    const keys = new Set<string>()
    if (file !== undefined) {
      const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return ''; throw err })
      // The last element is what follows the final newline: empty, or a line a crash cut short.
      for (const line of text.split('\n').slice(0, -1)) if (line !== '') keys.add(line)
    }
    return new PersistentSet(file, keys)
  }

  has (key: string): boolean {
    return this.keys.has(key)
  }

  /** Resolves once the entry is on disk, so what was added survives a restart. */
  async add (key: string): Promise<void> {
    if (this.keys.has(key) || key.includes('\n')) return
    // In memory first: a second add while the append is under way writes no duplicate line.
    this.keys.add(key)
    if (this.file !== undefined) await appendFile(this.file, `${key}\n`, { mode: 0o600 })
  }
}
