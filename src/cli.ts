#!/usr/bin/env node
/**
 * The `crossdock` command. `serve` (the default) runs the service; the other commands are operator
 * tools that share the configuration (environment variables only). Each command lives in
 * src/commands/ and is listed in COMMANDS, whose summaries make the help text.
 * Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config.
 */
import { loadConfig, describeConfig } from './config/index.js'
import { ConfigError } from './errors.js'
import { createSilentLogger } from './log.js'
import { runGc } from './registry/gc.js'
import { parseDuration } from './config/parse.js'
import { UsageError, type Command } from './commands/command.js'
import { serve } from './commands/serve.js'
import { caExport, caInfo } from './commands/ca.js'
import { cacheLs, cachePrune, cacheVerify } from './commands/cache.js'

export type { Command }

export const COMMANDS: Record<string, Command> = {
  serve,
  'config check': {
    summary: 'Validate the configuration and print it, secrets redacted.',
    help: 'Usage: crossdock config check\n\nParses every variable as `serve` would; prints NAME=value (source) with secrets redacted. Exit 2 on a bad value.\n',
    run: async () => {
      loadConfig()
      for (const v of describeConfig()) console.log(`${v.name}=${JSON.stringify(v.value)}  (${v.source})`)
      console.log('configuration ok')
      return 0
    },
  },
  'ca info': caInfo,
  'ca export': caExport,
  'cache ls': cacheLs,
  'cache prune': cachePrune,
  'cache verify': cacheVerify,
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

function helpText (): string {
  const width = Math.max(...Object.keys(COMMANDS).map(n => n.length)) + 2
  return `crossdock — one place to get container images: MITM caching proxy, hosted OCI registry, pull-through endpoint

Usage: crossdock [command] [options]

Commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)} ${c.summary}`).join('\n')}
  ${'help, --help'.padEnd(width)} This text. \`crossdock COMMAND --help\` describes one command.

Configuration is read from environment variables only; \`crossdock config check\` lists them all.
`
}

/** The commands of a group (`cache` → `cache ls`, `cache prune`, …), for `crossdock cache --help`. */
function groupHelp (group: string): string | undefined {
  const names = Object.keys(COMMANDS).filter(n => n.startsWith(`${group} `))
  if (names.length === 0) return undefined
  return `Usage: crossdock ${group} <${names.map(n => n.slice(group.length + 1)).join('|')}> [options]\n\n${names.map(n => `  ${n.padEnd(16)} ${COMMANDS[n].summary}`).join('\n')}\n`
}

export async function main (argv: string[]): Promise<number> {
  const wantsHelp = argv.includes('--help') || argv.includes('-h')
  const words = argv.filter(a => !a.startsWith('-'))
  if (words[0] === 'help' || (wantsHelp && words.length === 0)) { process.stdout.write(helpText()); return 0 }
  const name = words.length === 0 ? 'serve' : (words.length > 1 && COMMANDS[`${words[0]} ${words[1]}`] !== undefined ? `${words[0]} ${words[1]}` : words[0])
  const command = COMMANDS[name]
  if (command === undefined) {
    const group = groupHelp(words[0])
    if (group !== undefined) {
      if (wantsHelp) { process.stdout.write(group); return 0 }
      process.stderr.write(`crossdock: ${words.length > 1 ? `unknown command ${JSON.stringify(words.slice(0, 2).join(' '))}` : `${words[0]} needs a subcommand`}\n\n${group}`)
      return 2
    }
    process.stderr.write(`crossdock: unknown command ${JSON.stringify(words.join(' '))}\n\n${helpText()}`)
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
    if (err instanceof UsageError) {
      process.stderr.write(`crossdock ${name}: ${err.message}\n\n${command.help}`)
      return 2
    }
    throw err
  }
}

main(process.argv.slice(2)).then(code => { process.exitCode = code }, err => {
  process.stderr.write(`crossdock: ${(err as Error)?.stack ?? String(err)}\n`)
  process.exitCode = 1
})
