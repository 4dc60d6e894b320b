/**
 * The HTPASSWD_FILE: `user:hash` lines as written by `htpasswd -B` (Apache's tool), bcrypt only.
 *
 * Parsed strictly at start-up: a line that is not `user:$2y$…` (or `$2a$`/`$2b$`) is a ConfigError
 * naming the file, the line number and what is expected, because a silently skipped line is a user
 * who cannot log in and nobody knows why. MD5 (`$apr1$`), SHA1 (`{SHA}`), crypt and plain-text
 * entries are refused rather than supported: they are cheap to brute-force and bcryptjs cannot check
 * them anyway.
 *
 * The file is re-read when its mtime, size or inode changes (checked at most every
 * `checkIntervalMs`, on use), so adding a user needs no restart. A reload that fails (file deleted,
 * a bad line) keeps the previous users and logs an error: failing open would drop access control,
 * failing closed would lock every client out over a typo.
 */
import { readFile, stat } from 'node:fs/promises'
import { ConfigError } from '../errors.js'
import type { Logger } from '../log.js'

/** user → bcrypt hash. */
export type HtpasswdUsers = ReadonlyMap<string, string>

export interface HtpasswdFile {
  readonly path: string
  /**
   * The current users. Re-reads the file first when it changed since the last check (and the last
   * check is older than `checkIntervalMs`); never rejects — a failed reload keeps the previous users.
   */
  users: () => Promise<HtpasswdUsers>
}

// bcrypt's modular-crypt form: $2y$NN$ + 22 chars of salt + 31 chars of hash, bcrypt's base64 alphabet.
const BCRYPT = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/

/** What kind of hash a refused line holds, for the error message. */
function describeHash (hash: string): string {
  if (hash.startsWith('$apr1$')) return 'an MD5 ($apr1$) hash'
  if (hash.startsWith('{SHA}')) return 'a SHA-1 ({SHA}) hash'
  if (/^\$[156]\$/.test(hash)) return 'a crypt(3) MD5/SHA hash'
  if (/^\$2[aby]\$/.test(hash)) return 'a truncated or malformed bcrypt hash'
  if (/^[./A-Za-z0-9]{13}$/.test(hash)) return 'a DES crypt hash'
  return 'a plain-text password or unknown hash'
}

/** Parses the file's text. `label` names the file in error messages. Throws ConfigError. */
export function parseHtpasswd (text: string, label: string): Map<string, string> {
  const users = new Map<string, string>()
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/\r$/, '').trim()
    if (line === '' || line.startsWith('#')) continue
    const where = `HTPASSWD_FILE=${label} line ${i + 1}`
    const colon = line.indexOf(':')
    if (colon <= 0) throw new ConfigError(`${where}: expected "user:bcrypt-hash" as written by \`htpasswd -B\``)
    const user = line.slice(0, colon)
    const hash = line.slice(colon + 1)
    if (!BCRYPT.test(hash)) {
      throw new ConfigError(`${where}: user "${user}" has ${describeHash(hash)}; expected a bcrypt hash ($2y$, $2a$ or $2b$), e.g. from \`htpasswd -B\``)
    }
    // Apache would silently use the first entry; refusing makes a copy-paste mistake visible.
    if (users.has(user)) throw new ConfigError(`${where}: user "${user}" appears twice; expected one line per user`)
    users.set(user, hash)
  }
  return users
}

interface FileStamp { mtimeMs: number, size: number, ino: number }

async function readUsers (path: string): Promise<{ users: Map<string, string>, stamp: FileStamp }> {
  let text: string
  let st
  try {
    st = await stat(path)
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`HTPASSWD_FILE=${path}: cannot read the file (${(err as Error).message}); expected a readable htpasswd file written by \`htpasswd -B\``)
  }
  return { users: parseHtpasswd(text, path), stamp: { mtimeMs: st.mtimeMs, size: st.size, ino: st.ino } }
}

/**
 * Reads and parses the file now (ConfigError when unreadable or malformed) and returns a handle
 * that picks up later changes. `onReload` runs after a successful re-read (the credential cache
 * hangs off it).
 */
export async function loadHtpasswdFile (path: string, opts: {
  log: Logger
  checkIntervalMs?: number
  now?: () => number
  onReload?: (users: HtpasswdUsers) => void
}): Promise<HtpasswdFile> {
  const now = opts.now ?? Date.now
  const checkIntervalMs = opts.checkIntervalMs ?? 2000
  let { users, stamp } = await readUsers(path)
  let lastCheck = now()
  let lastError: string | undefined
  let refreshing: Promise<void> | undefined

  async function refresh (): Promise<void> {
    try {
      const st = await stat(path)
      if (st.mtimeMs === stamp.mtimeMs && st.size === stamp.size && st.ino === stamp.ino) return
      const next = await readUsers(path)
      users = next.users
      stamp = next.stamp
      lastError = undefined
      opts.log.info({ path, users: users.size }, 'htpasswd file reloaded')
      opts.onReload?.(users)
    } catch (err) {
      const message = (err as Error).message
      // Once per distinct problem, not once per check.
      if (message !== lastError) opts.log.error({ path, err: message }, 'htpasswd file reload failed; keeping the previous users')
      lastError = message
    }
  }

  return {
    path,
    async users () {
      if (now() - lastCheck >= checkIntervalMs) {
        lastCheck = now()
        refreshing ??= refresh().finally(() => { refreshing = undefined })
      }
      if (refreshing !== undefined) await refreshing
      return users
    },
  }
}
