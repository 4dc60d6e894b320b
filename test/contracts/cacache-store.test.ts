// The pull-through cache's cacache implementation against the cache store contract suite.
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSilentLogger } from '../../src/log.js'
import { openCacheStore } from '../../src/cache/cache-store.js'
import type { CacheStore } from '../../src/cache/stores.js'
import { cacheStoreContract } from './cache-stores.js'

const open = async (dir: string): Promise<CacheStore> => await openCacheStore({ dir, maxSize: 1 << 30, inactiveMs: 0, minFree: 0, log: createSilentLogger() })
const closed = new WeakSet<CacheStore>()

cacheStoreContract(t, {
  name: 'cacache',
  make: async () => await open(await mkdtemp(join(tmpdir(), 'crossdock-contract-'))),
  teardown: async s => {
    if (!closed.has(s)) await s.close()
    await rm(s.dir, { recursive: true, force: true })
  },
  reopen: async s => {
    await s.close()
    closed.add(s)
    return await open(s.dir)
  },
})
