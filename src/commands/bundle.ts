/** `crossdock export` and `crossdock import`: air-gap bundles (src/bundle/). */
import type { Command } from './command.js'
import { UsageError } from './command.js'
import { CLIENT_HELP, CLIENT_OPTIONS, bundleProgress, clientFrom, parseWithPositionals } from './transfer-options.js'
import { parseImageReference, type ImageReference } from '../client/image-content.js'
import { exportBundle } from '../bundle/exporter.js'
import { importBundle, type ImportTarget } from '../bundle/importer.js'

export const exportCommand: Command = {
  summary: 'Write images from a running crossdock (cache or hosted) to an OCI image layout archive.',
  help: `Usage: crossdock export [options] -o <bundle.tar> <image>…

Images are named as on the registry door: docker.io/library/alpine:3.20 (pull-through cache),
team/app:1 (hosted). Every platform's manifests and blobs go in; index.json names each image with
org.opencontainers.image.ref.name, so \`skopeo copy oci-archive:bundle.tar:<image> …\` reads it.

  -o, --output <file>  the archive to write (written as <file>.partial, renamed when complete)
${CLIENT_HELP}`,
  run: async (args) => {
    const { values, positionals } = parseWithPositionals(args, { ...CLIENT_OPTIONS, output: { type: 'string', short: 'o' } })
    if (typeof values.output !== 'string' || values.output === '') throw new UsageError('-o <bundle.tar> is required')
    if (positionals.length === 0) throw new UsageError('name at least one image')
    const images: ImageReference[] = positionals.map(p => { try { return parseImageReference(p) } catch (err) { throw new UsageError((err as Error).message) } })
    const client = clientFrom(values)
    const progress = bundleProgress()
    try {
      const r = await exportBundle({ client, images, out: values.output, progress })
      progress.line(`${values.output}: ${r.images} image(s), ${r.blobs} blobs, ${r.bytes} bytes`)
      return 0
    } finally {
      progress.done()
      await client.close()
    }
  },
}

export const importCommand: Command = {
  summary: 'Load an OCI image layout archive into a running crossdock (hosted registry or cache).',
  help: `Usage: crossdock import [options] <bundle.tar>

  --into hosted|cache  hosted (default): push into the hosted registry under each image's name;
                       cache: fill the pull-through cache (names like docker.io/library/alpine:3.20),
                       so a crossdock with no upstream serves \`docker pull\` of those images
  --name <repo[:tag]>  the image name when the archive's ref.name annotation is only a tag (skopeo)
${CLIENT_HELP}
Digests are verified; what the target already holds is skipped, so an interrupted import is resumed
by running it again.
`,
  run: async (args) => {
    const { values, positionals } = parseWithPositionals(args, { ...CLIENT_OPTIONS, into: { type: 'string', default: 'hosted' }, name: { type: 'string' } })
    if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'name the archive to import' : `one archive at a time (got ${positionals.length})`)
    if (values.into !== 'hosted' && values.into !== 'cache') throw new UsageError(`--into ${JSON.stringify(values.into)}: expected hosted or cache`)
    const client = clientFrom(values)
    const progress = bundleProgress()
    try {
      const r = await importBundle({ client, path: positionals[0], into: values.into as ImportTarget, name: values.name, progress })
      progress.line(`${positionals[0]}: ${r.images.length} image(s) imported into ${values.into as string} (${r.sent} blobs sent, ${r.skipped} already there)`)
      return 0
    } finally {
      progress.done()
      await client.close()
    }
  },
}
