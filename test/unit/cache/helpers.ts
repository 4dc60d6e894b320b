// Shared by the cache unit tests: a temp dir store and deterministic blobs.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { PassThrough, Readable } from 'node:stream'
import type { Test } from 'tap'
import { createSilentLogger } from '../../../src/log.js'
import { openCacheStore, type CacheStore, type CacheStoreOptions } from '../../../src/cache/cache-store.js'

export async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'crossdock-cache-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

export async function store (t: Test, dir: string, opts: Partial<CacheStoreOptions> = {}): Promise<CacheStore> {
  const s = await openCacheStore({ dir, maxSize: 1 << 30, inactiveMs: 0, log: createSilentLogger(), ...opts })
  t.teardown(async () => { await s.close() })
  return s
}

export function blob (size: number): { data: Buffer, digest: string } {
  const data = randomBytes(size)
  return { data, digest: `sha256:${createHash('sha256').update(data).digest('hex')}` }
}

export function sha256 (data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

export async function collect (r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of r) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

/** A body the test feeds by hand. */
export function controlledBody (): PassThrough {
  return new PassThrough()
}

/** Resolves once `fill.written` reached `n`. */
export async function writtenAtLeast (fill: { written: number, once: (e: string, f: () => void) => unknown }, n: number): Promise<void> {
  while (fill.written < n) await new Promise<void>(resolve => fill.once('progress', () => resolve()))
}
