// The hosted store behaviours against the local directory (the embedded backend).
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createFsStorage } from '../../../src/registry/storage/fs-storage.js'
import { hostedStoreBehaviours } from './hosted-store-behaviours.js'

hostedStoreBehaviours(t, 'fs', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'crossdock-fs-stores-'))
  return { storage: await createFsStorage(dir), teardown: async () => { await rm(dir, { recursive: true, force: true }) } }
})
