// The prefetch queue alone (src/mirror/prefetch.ts), with a stub cache: what it queues from which
// manifests, and how rate-limit headers pause it.
import t from 'tap'
import { pino } from 'pino'
import { Prefetcher, type PassedManifest, type PrefetchCache } from '../../../src/mirror/prefetch.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const d = (c: string): string => `sha256:${c.repeat(64)}`

function setup (opts: { concurrency?: number, now?: () => number } = {}) {
  const asked: string[] = []
  const cache: PrefetchCache = {
    stat: () => undefined,
    inflight: () => undefined,
    // Every fetch answers 404 (nothing cacheable): the task ends, its slot frees.
    openOrFill: async (digest, fetch) => { asked.push(digest.value); const f = await fetch(); return { kind: 'answer', answer: f.answer } },
  }
  const p = new Prefetcher({ cache, log: pino({ level: 'silent' }), concurrency: opts.concurrency ?? 8, imageBudget: 1 << 30, now: opts.now })
  const manifest = (blobs: string[], extra: object = {}): PassedManifest => ({
    host: 'registry-1.docker.io',
    repository: 'library/x',
    mediaType: OCI_MANIFEST,
    bytes: Buffer.from(JSON.stringify({ schemaVersion: 2, config: { digest: blobs[0], size: 10 }, layers: blobs.slice(1).map(b => ({ digest: b, size: 10 })), ...extra })),
    fetch: async () => ({ answer: { status: 404, headers: {}, body: (await import('node:stream')).Readable.from([]), url: '', ms: 0 } }),
  })
  return { p, asked, manifest }
}

t.test('a low RateLimit-Remaining pauses prefetching from that host until it recovers or the pause ends', async t => {
  let now = 1_000_000
  const { p, asked, manifest } = setup({ now: () => now })
  p.noteUpstream({ host: 'registry-1.docker.io', status: 200, headers: { 'ratelimit-remaining': '3;w=21600' } })
  p.manifestPassed(manifest([d('a'), d('b')]))
  await p.idle()
  t.same(asked, [], 'nothing fetched with 3 pulls left')
  t.equal(p.stats().skipped.ratelimit, 2)
  p.noteUpstream({ host: 'registry-1.docker.io', status: 200, headers: { 'ratelimit-remaining': '80;w=21600' } })
  p.manifestPassed(manifest([d('c')]))
  await p.idle()
  t.same(asked, [d('c')], 'headroom again: prefetching resumes')
  p.noteUpstream({ host: 'registry-1.docker.io', status: 429, headers: {} })
  p.manifestPassed(manifest([d('e')]))
  await p.idle()
  t.same(asked, [d('c')], 'a 429 pauses it')
  now += 61_000
  p.manifestPassed(manifest([d('f')]))
  await p.idle()
  t.same(asked, [d('c'), d('f')], 'for a minute without Retry-After')
  p.noteUpstream({ host: 'ghcr.io', status: 429, headers: { 'retry-after': '5' } })
  p.manifestPassed(manifest([d('1')]))
  await p.idle()
  t.same(asked, [d('c'), d('f'), d('1')], 'other hosts are not paused')
})

t.test('what is queued: image manifests only, foreign layers and bad digests left out, duplicates once', async t => {
  const { p, asked, manifest } = setup({ concurrency: 1 })
  p.manifestPassed({ ...manifest([d('a')]), mediaType: 'application/vnd.oci.image.index.v1+json' })
  p.manifestPassed({ ...manifest([d('a')]), bytes: Buffer.from('not json') })
  await p.idle()
  t.same(asked, [], 'an index, or a manifest that is not JSON: nothing')
  const m = manifest([d('a'), d('b')])
  const withForeign = JSON.parse(m.bytes.toString())
  withForeign.layers.push({ mediaType: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', digest: d('c'), size: 10, urls: ['https://example.invalid/x'] })
  withForeign.layers.push({ digest: 'md5:abc', size: 1 })
  p.manifestPassed({ ...m, bytes: Buffer.from(JSON.stringify(withForeign)) })
  p.manifestPassed(m)
  await p.idle()
  t.same(asked, [d('a'), d('b')], 'config and layer once each; the foreign layer and the unknown algorithm skipped')
  t.equal(p.stats().skipped.queued, 2, 'the second pass found a (downloading) and b (waiting) already there')
})

t.test('stop() drops what is queued and starts nothing new; a download running finishes', async t => {
  const { asked, manifest } = setup()
  let release!: () => void
  const held = new Promise<void>(resolve => { release = resolve })
  const cache: PrefetchCache = {
    stat: () => undefined,
    inflight: () => undefined,
    openOrFill: async (digest, fetch) => { asked.push(digest.value); const f = await fetch(); return { kind: 'answer', answer: f.answer } },
  }
  const p = new Prefetcher({ cache, log: pino({ level: 'silent' }), concurrency: 1, imageBudget: 1 << 30, beforeTask: async () => { await held } })
  p.manifestPassed(manifest([d('a'), d('b'), d('c')]))
  t.match(p.stats(), { active: 1, queued: 2 })
  p.stop()
  t.match(p.stats(), { active: 1, queued: 0 }, 'the queue is dropped')
  p.manifestPassed(manifest([d('e')]))
  t.match(p.stats(), { queued: 0 }, 'nothing new is queued')
  release()
  await p.idle()
  t.same(asked, [d('a')], 'only the task already running went on')
})
