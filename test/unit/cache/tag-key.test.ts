import t from 'tap'
import { loadConfig } from '../../../src/config/index.js'
import { normalizeAccept, tagKey } from '../../../src/cache/tag-key.js'
import { manifestTier } from '../../../src/mirror/manifest-tiers.js'

t.test('tag keys: host, repository, tag and accepted media types; never the path alone', async t => {
  const base = { host: 'ghcr.io', repository: 'org/app', tag: 'v1', accept: 'application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json' }
  t.equal(tagKey(base), tagKey({ ...base, host: 'GHCR.IO', accept: ['application/vnd.docker.distribution.manifest.v2+json', 'application/vnd.oci.image.index.v1+json'] }), 'order, case of host and header splitting do not matter')
  t.not(tagKey(base), tagKey({ ...base, host: 'quay.io' }), 'another upstream')
  t.not(tagKey(base), tagKey({ ...base, accept: 'application/vnd.docker.distribution.manifest.v2+json' }), 'other accepted types')
  t.not(tagKey(base), tagKey({ ...base, repository: 'org/app2' }))
  t.equal(normalizeAccept(undefined), '')
  t.equal(normalizeAccept('A/B ; q=0.5,, a/b;q=0.5'), 'a/b;q=0.5')
})

t.test('ENABLE_MANIFEST_CACHE tiers with rpardini defaults', async t => {
  const off = loadConfig({}).cache
  t.same(manifestTier(off, 'stable'), { tier: 'disabled', ttlMs: 0 })
  const on = loadConfig({ ENABLE_MANIFEST_CACHE: 'true' }).cache
  t.same(manifestTier(on, 'stable'), { tier: 'primary', ttlMs: 600_000 })
  t.same(manifestTier(on, 'nightly-2024'), { tier: 'primary', ttlMs: 600_000 }, 'nginx regex is anchored at the start only')
  t.same(manifestTier(on, '1.2.3'), { tier: 'secondary', ttlMs: 60 * 86_400_000 })
  t.same(manifestTier(on, 'latest'), { tier: 'default', ttlMs: 3_600_000 })
  t.same(manifestTier(on, 'my-stable'), { tier: 'default', ttlMs: 3_600_000 })
  const custom = loadConfig({ ENABLE_MANIFEST_CACHE: 'true', MANIFEST_CACHE_PRIMARY_REGEX: 'latest', MANIFEST_CACHE_PRIMARY_TIME: '5s' }).cache
  t.same(manifestTier(custom, 'latest'), { tier: 'primary', ttlMs: 5000 })
})
