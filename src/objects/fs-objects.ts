/**
 * The object primitive (object-store.ts) over a directory: a key `a/b/c` is the file <root>/a/b/c.
 * Whole writes go to <root>/tmp/ first and are renamed into place (atomic on POSIX; tmp/ is on the
 * same filesystem by construction); "if absent" is link(2), which fails when the target exists.
 * Reads hold the file open, so an unlink (gc) cannot cut a reader short.
 *
 * What only a directory can do is here too, for the backend's own strategies: the path of a key
 * (an upload appends to one file; gc parks a blob by rename), and fresh tmp/ names.
 */
import { promises as fsp } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { Writable } from 'node:stream'
import type { ByteRange } from '../oci/range.js'
import { sendFile } from '../util/file-sender.js'
import type { ObjectStore, StoredObject } from './object-store.js'
import { isNotFound, readIfExists, readdirIfExists, statIfExists, unlinkIfExists, writeFileAtomic } from './fs-files.js'

export class FsObjects implements ObjectStore {
  constructor (readonly root: string) {}

  get tmpDir (): string { return join(this.root, 'tmp') }

  /** The file of `key`. Keys come from a layout module that validated them; this refuses anything else. */
  path (key: string): string {
    const parts = key.split('/')
    if (parts.some(p => p === '' || p === '.' || p === '..' || p.includes('\0'))) throw new Error(`fs-objects: invalid key ${JSON.stringify(key.slice(0, 200))}`)
    return join(this.root, ...parts)
  }

  /** The directory of a prefix ('a/b/'), or the root for ''. */
  private dir (prefix: string): string {
    return prefix === '' ? this.root : this.path(prefix.replace(/\/$/, ''))
  }

  /**
   * A fresh, unique file name in tmp/. `label` is checked like every other input, so no caller
   * can turn it into a traversal.
   */
  tmpFile (label = 'w'): string {
    if (!/^[a-z0-9-]{1,32}$/.test(label)) throw new Error(`fs-objects: invalid tmp label ${JSON.stringify(label.slice(0, 40))}`)
    return join(this.tmpDir, `${label}-${process.pid}-${randomBytes(8).toString('hex')}`)
  }

  async head (key: string): Promise<StoredObject | undefined> {
    const st = await statIfExists(this.path(key))
    return st?.isFile() === true ? { key, size: st.size, modifiedAt: st.mtimeMs } : undefined
  }

  async read (key: string): Promise<Buffer | undefined> {
    return await readIfExists(this.path(key))
  }

  async send (key: string, out: Writable, opts: { range?: ByteRange, ready?: () => void } = {}): Promise<boolean> {
    let handle
    try {
      handle = await fsp.open(this.path(key), 'r') // held: an unlink of the path cannot cut us short
    } catch (err) {
      if (isNotFound(err)) return false
      throw err
    }
    try {
      opts.ready?.()
      await sendFile(handle, out, opts.range)
      return true
    } finally {
      await handle.close()
    }
  }

  async write (key: string, bytes: Buffer | string, opts: { ifAbsent?: boolean } = {}): Promise<boolean> {
    const target = this.path(key)
    if (opts.ifAbsent !== true) {
      await writeFileAtomic(this.tmpFile(), target, bytes)
      return true
    }
    const tmp = this.tmpFile()
    await fsp.writeFile(tmp, bytes)
    try {
      await fsp.mkdir(join(target, '..'), { recursive: true })
      await fsp.link(tmp, target) // EEXIST when another writer was first: theirs stands, whole
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
      throw err
    } finally {
      await unlinkIfExists(tmp)
    }
  }

  async delete (key: string): Promise<boolean> {
    return await unlinkIfExists(this.path(key))
  }

  async * list (prefix: string): AsyncIterable<StoredObject> {
    const walk = async function * (self: FsObjects, dir: string, keyPrefix: string): AsyncIterable<StoredObject> {
      for (const name of (await readdirIfExists(dir)).sort()) {
        const path = join(dir, name)
        const st = await statIfExists(path)
        if (st === undefined) continue // removed while we walked
        if (st.isDirectory()) yield * walk(self, path, `${keyPrefix}${name}/`)
        else if (st.isFile()) yield { key: `${keyPrefix}${name}`, size: st.size, modifiedAt: st.mtimeMs }
      }
    }
    yield * walk(this, this.dir(prefix), prefix)
  }

  async children (prefix: string): Promise<string[]> {
    let entries
    try {
      entries = await fsp.readdir(this.dir(prefix), { withFileTypes: true })
    } catch (err) {
      if (isNotFound(err)) return []
      throw err
    }
    return entries.filter(e => e.isDirectory()).map(e => e.name).sort()
  }

  async any (prefix: string): Promise<boolean> {
    return await statIfExists(this.dir(prefix)) !== undefined
  }
}
