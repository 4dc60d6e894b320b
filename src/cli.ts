#!/usr/bin/env node
/**
 * The `crossdock` command. `serve` (the default) runs the service; the other commands are operator
 * tools that share the configuration. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config.
 */
import { loadConfig, describeConfig } from './config/index.js'
import { ConfigError } from './errors.js'
import { createApp } from './app.js'
import { createLogger, createSilentLogger } from './log.js'
import { runGc } from './registry/gc.js'
import { parseDuration } from './config/parse.js'

const HELP = `crossdock — one place to get container images: MITM caching proxy, hosted OCI registry, pull-through endpoint

Usage: crossdock [command] [options]

Commands:
  serve            Run the service (the default): proxy door on PROXY_PORT, registry door on REGISTRY_PORT.
  config check     Validate the configuration from the environment and print it, secrets redacted.
  gc               Remove hosted-registry blobs no manifest references (--dry-run, --delete-untagged).
  help, --help     This text. \`crossdock COMMAND --help\` describes one command.

Configuration is read from environment variables only; \`crossdock config check\` lists them all.
`

export interface Command {
  summary: string
  help: string
  run: (args: string[]) => Promise<number>
}

export const COMMANDS: Record<string, Command> = {
  serve: {
    summary: 'Run the service.',
    help: 'Usage: crossdock serve\n\nStarts the proxy door (PROXY_PORT) and the registry door (REGISTRY_PORT) and runs until SIGTERM or SIGINT.\n',
    run: serve,
  },
  'config check': {
    summary: 'Validate and print the configuration.',
    help: 'Usage: crossdock config check\n\nParses every variable as `serve` would; prints NAME=value (source) with secrets redacted. Exit 2 on a bad value.\n',
    run: async () => {
      loadConfig()
      for (const v of describeConfig()) console.log(`${v.name}=${JSON.stringify(v.value)}  (${v.source})`)
      console.log('configuration ok')
      return 0
    },
  },
  gc: {
    summary: 'Remove hosted-registry blobs no manifest references.',
    help: 'Usage: crossdock gc [--dry-run] [--delete-untagged] [--grace=<duration>]\n\nMark and sweep of REGISTRY_STORAGE_DIR, safe while the registry serves. --dry-run changes nothing;\n--delete-untagged also deletes manifests no tag reaches; --grace (default 1h) spares blobs written more\nrecently, whose manifest may still be on its way. Prints each removal and the bytes reclaimed.\n',
    run: async (args) => {
      const unknown = args.filter(a => !['--dry-run', '--delete-untagged'].includes(a) && !a.startsWith('--grace='))
      if (unknown.length > 0) { process.stderr.write(`crossdock gc: unknown option ${unknown[0]}\n`); return 2 }
      const grace = args.find(a => a.startsWith('--grace='))?.slice('--grace='.length) ?? '1h'
      await runGc({
        config: loadConfig(),
        log: createSilentLogger(),
        dryRun: args.includes('--dry-run'),
        deleteUntagged: args.includes('--delete-untagged'),
        graceMs: parseDuration('--grace', grace),
        out: line => { process.stdout.write(`${line}\n`) },
      })
      return 0
    },
  },
}

async function serve (): Promise<number> {
  const config = loadConfig()
  const log = createLogger({ level: config.logLevel })
  const app = await createApp({ config, log })
  await app.start()
  const { proxy, registry } = app.addresses()
  log.info({ proxy, registry }, `crossdock listening: proxy door ${proxy}, registry door ${registry}`)
  await new Promise<void>(resolve => {
    const onSignal = (signal: string): void => {
      log.info({ signal }, 'shutting down')
      resolve()
    }
    process.once('SIGTERM', () => onSignal('SIGTERM'))
    process.once('SIGINT', () => onSignal('SIGINT'))
  })
  await app.stop()
  log.flush()
  return 0
}

export async function main (argv: string[]): Promise<number> {
  const wantsHelp = argv.includes('--help') || argv.includes('-h')
  const words = argv.filter(a => !a.startsWith('-'))
  if (words[0] === 'help' || (wantsHelp && words.length === 0)) { process.stdout.write(HELP); return 0 }
  const name = words.length === 0 ? 'serve' : (words.length > 1 && COMMANDS[`${words[0]} ${words[1]}`] !== undefined ? `${words[0]} ${words[1]}` : words[0])
  const command = COMMANDS[name]
  if (command === undefined) {
    process.stderr.write(`crossdock: unknown command ${JSON.stringify(words.join(' '))}\n\n${HELP}`)
    return 2
  }
  if (wantsHelp) { process.stdout.write(command.help); return 0 }
  try {
    return await command.run(argv.slice(name.split(' ').length))
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`crossdock: configuration error: ${err.message}\n`)
      return 2
    }
    throw err
  }
}

main(process.argv.slice(2)).then(code => { process.exitCode = code }, err => {
  process.stderr.write(`crossdock: ${(err as Error)?.stack ?? String(err)}\n`)
  process.exitCode = 1
})
