/**
 * The object-storage primitive under the hosted registry's stores: keys (`a/b/c`, built by one
 * layout module, validated there) to whole objects. Two implementations: a directory
 * (fs-objects.ts, a key is a file under the root) and a bucket (s3-objects.ts). The stores'
 * logic — links, tags, referrers, revisions, sessions — is written once over this interface.
 *
 * Contract, as the stores rely on it:
 * - "Missing" is undefined or false, never an exception; exceptions are I/O failures (on the
 *   bucket: OciError UNAVAILABLE with a one-line reason).
 * - `write` makes an object visible whole or not at all (tmp + rename; PutObject). Readers never
 *   see a partial object. Concurrent writes of a key: the last one wins, whole; with `ifAbsent`
 *   exactly one wins and the others learn they lost.
 * - `modifiedAt` is epoch ms of the last write, whole seconds on the bucket (S3's resolution).
 */
import type { Writable } from 'node:stream'
import type { ByteRange } from '../oci/range.js'

export interface StoredObject {
  key: string
  size: number
  modifiedAt: number
}

export interface ObjectStore {
  head: (key: string) => Promise<StoredObject | undefined>
  /** A small object's bytes (links, records, tags); undefined when absent. */
  read: (key: string) => Promise<Buffer | undefined>
  /**
   * Streams the object (or an inclusive range) into `out` without ending it, with backpressure.
   * `ready` runs once the object is open, before any byte; once open, a concurrent delete does
   * not cut the bytes short. False, `ready` not called, when the object does not exist.
   */
  send: (key: string, out: Writable, opts?: { range?: ByteRange, ready?: () => void }) => Promise<boolean>
  /** Writes a whole object, visible atomically. With `ifAbsent`: false, nothing written, when the key exists. */
  write: (key: string, bytes: Buffer | string, opts?: { ifAbsent?: boolean }) => Promise<boolean>
  /** Removes the object; false when it did not exist. */
  delete: (key: string) => Promise<boolean>
  /**
   * Every object under `prefix` (which ends with '/'). Order: the bucket's is whole-key order (gc
   * relies on it there); the directory's is name order level by level. Callers that show a list sort it.
   */
  list: (prefix: string) => AsyncIterable<StoredObject>
  /** The names one level under `prefix` (ends with '/') that have objects below them, sorted. */
  children: (prefix: string) => Promise<string[]>
  /**
   * Whether `prefix` (ends with '/') holds anything. The directory answers for the directory
   * itself, which stays once written (a repository whose last tag went still exists).
   */
  any: (prefix: string) => Promise<boolean>
}
