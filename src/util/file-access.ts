/**
 * One sentence for a file or directory crossdock cannot use, naming the owner and what to run.
 * The usual case is a volume written by another image (rpardini's /ca is root's, crossdock runs as
 * uid 10001): "permission denied" alone does not say which uid needs what.
 */
import { statSync } from 'node:fs'

/** `err` came from reading or writing `path`; the answer says why and how to fix it. */
export function accessProblem (path: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException)?.code
  if (code === 'EACCES' || code === 'EPERM') return `${path}: permission denied (${ownership(path)})`
  if (code === 'ENOENT') return `${path}: does not exist`
  if (code === 'ENOTDIR') return `${path}: a path component is not a directory`
  if (code === 'EISDIR') return `${path}: is a directory, expected a file`
  return `${path}: ${(err as Error)?.message ?? String(err)}`
}

/** "owned by uid 0, crossdock runs as uid 10001: chown 10001 <path>". */
export function ownership (path: string): string {
  const uid = process.getuid?.() ?? -1
  const gid = process.getgid?.() ?? -1
  let owner: number | undefined
  try { owner = statSync(path).uid } catch { /* the parent hides it: say what we know */ }
  const who = owner === undefined ? '' : `owned by uid ${owner}, `
  return `${who}crossdock runs as uid ${uid}: chown ${uid}:${gid} ${path} (or run crossdock as its owner)`
}
