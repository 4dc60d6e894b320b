/**
 * The few filesystem moves the directory backend uses: read a small file or learn it is missing,
 * write a small file atomically (a tmp file then rename), and rename a finished file into place.
 * Rename within one filesystem is atomic on POSIX, which is what makes every write all-or-nothing.
 */
import { promises as fsp } from 'node:fs'
import { dirname } from 'node:path'

export function isNotFound (err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code
  return code === 'ENOENT' || code === 'ENOTDIR'
}

/** The file's contents, or undefined when it does not exist. */
export async function readIfExists (path: string): Promise<Buffer | undefined> {
  try {
    return await fsp.readFile(path)
  } catch (err) {
    if (isNotFound(err)) return undefined
    throw err
  }
}

export async function statIfExists (path: string): Promise<import('node:fs').Stats | undefined> {
  try {
    return await fsp.stat(path)
  } catch (err) {
    if (isNotFound(err)) return undefined
    throw err
  }
}

/** Removes a file; false when it was not there. */
export async function unlinkIfExists (path: string): Promise<boolean> {
  try {
    await fsp.unlink(path)
    return true
  } catch (err) {
    if (isNotFound(err)) return false
    throw err
  }
}

/** Entries of a directory, or [] when it does not exist. */
export async function readdirIfExists (path: string): Promise<string[]> {
  try {
    return await fsp.readdir(path)
  } catch (err) {
    if (isNotFound(err)) return []
    throw err
  }
}

/**
 * Renames `from` to `to`, creating `to`'s directory. Retries once when the directory vanished
 * between mkdir and rename (gc removes empty directories while we serve).
 */
export async function renameInto (from: string, to: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    await fsp.mkdir(dirname(to), { recursive: true })
    try {
      await fsp.rename(from, to)
      return
    } catch (err) {
      if (attempt < 2 && isNotFound(err) && await statIfExists(from) !== undefined) continue
      throw err
    }
  }
}

/** Writes `data` to `target` all-or-nothing: to `tmp` (same filesystem) first, then renamed over the target. */
export async function writeFileAtomic (tmp: string, target: string, data: string | Buffer): Promise<void> {
  await fsp.writeFile(tmp, data)
  try {
    await renameInto(tmp, target)
  } catch (err) {
    await unlinkIfExists(tmp)
    throw err
  }
}
