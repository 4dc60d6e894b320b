// The hosted registry's embedded backend (a directory) against the storage contract suite.
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createFsStorage, type FsStorage } from '../../src/registry/storage/fs-storage.js'
import { registryStorageContract } from './registry-stores.js'

const roots = new WeakMap<FsStorage, string>()

registryStorageContract(t, {
  name: 'fs',
  make: async () => {
    const root = await mkdtemp(join(tmpdir(), 'crossdock-contract-'))
    const s = await createFsStorage(root)
    roots.set(s, root)
    return s
  },
  teardown: async s => { await rm(roots.get(s as FsStorage)!, { recursive: true, force: true }) },
  reopen: async s => {
    const root = roots.get(s as FsStorage)!
    const again = await createFsStorage(root)
    roots.set(again, root)
    return again
  },
})
