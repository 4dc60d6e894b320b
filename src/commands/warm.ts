/**
 * `crossdock warm <image>…`: asks a running crossdock to warm its cache now (POST /warm on the
 * registry door, warm-service.ts) and shows the run as the server streams it.
 */
import type { Command } from './command.js'
import { UsageError, createProgress, formatBytes } from './command.js'
import { CLIENT_HELP, CLIENT_OPTIONS, clientFrom, parseWithPositionals } from './transfer-options.js'
import { parseImageReference } from '../client/image-content.js'
import type { WarmEvent } from '../warm/warmer.js'

export const warm: Command = {
  summary: 'Ask a running crossdock to pull images (every platform) into its cache now.',
  help: `Usage: crossdock warm [options] <image>…

Images are named as on the registry door: docker.io/library/alpine:3.20, ghcr.io/org/app:1.
The server pulls each through its own pull-through path (HEAD first, skipping what is cached) and
stops at the first 429, saying when to retry. Exit 1 if any image failed or the run was rate limited.

${CLIENT_HELP}`,
  run: async (args) => {
    const { values, positionals } = parseWithPositionals(args, CLIENT_OPTIONS)
    if (positionals.length === 0) throw new UsageError('name at least one image')
    for (const p of positionals) { try { parseImageReference(p) } catch (err) { throw new UsageError((err as Error).message) } }
    const client = clientFrom(values)
    try {
      const r = await client.send('POST', '/warm', { 'content-type': 'application/json' }, JSON.stringify({ images: positionals }))
      if (r.statusCode !== 200) throw await client.failure(r, 'warm')
      const bar = createProgress()
      let ok = false
      const totals = new Map<string, { bytes: number, done: number }>()
      let rest = ''
      for await (const chunk of r.body as AsyncIterable<Buffer>) {
        rest += chunk.toString('utf8')
        const lines = rest.split('\n')
        rest = lines.pop() ?? ''
        for (const line of lines.filter(l => l !== '')) {
          const e = JSON.parse(line) as WarmEvent
          const say = (text: string, stream: NodeJS.WritableStream = process.stdout): void => { bar.done(); stream.write(`${text}\n`) }
          switch (e.event) {
            case 'image': totals.set(e.image, { bytes: e.bytes, done: 0 }); say(`${e.image}: ${e.digest}, ${e.manifests} manifest(s), ${e.blobs} blob(s), ${formatBytes(e.bytes)}`); break
            case 'blob': {
              const t = totals.get(e.image)
              if (t !== undefined) t.done += e.size
              if (process.stderr.isTTY === true && t !== undefined) bar.update(`${e.image}  ${formatBytes(t.done)} / ${formatBytes(t.bytes)}`)
              else say(`${e.image}: ${e.digest} ${e.status === 'cached' ? 'already cached' : `fetched (${formatBytes(e.size)})`}`)
              break
            }
            case 'image-done': say(`${e.image}: warm (${e.fetchedBlobs} fetched, ${formatBytes(e.fetchedBytes)}; ${e.cachedBlobs} already cached)`); break
            case 'error': say(`crossdock warm: ${e.message}`, process.stderr); break
            case 'rate-limited': say(`crossdock warm: ${e.message}${e.retryAt === undefined ? ' (the upstream did not say when)' : ''}`, process.stderr); break
            case 'end': ok = e.ok; bar.done(); break
          }
        }
      }
      return ok ? 0 : 1
    } finally {
      await client.close()
    }
  },
}
