#!/usr/bin/env node
/**
 * The `crossdock` command. `serve` (the default) runs the service; the other commands are operator
 * tools that share the configuration (environment variables only). Each command lives in
 * src/commands/ and is listed in COMMANDS, whose summaries make the help text.
 * Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config. Every option is parsed by node:util
 * parseArgs, strictly: an unknown command or flag prints the usage and exits 2, and never starts
 * the service.
 */
import { parseArgs } from 'node:util'
import { loadConfig, describeConfig } from './config/index.js'
import { ConfigError } from './errors.js'
import { createSilentLogger } from './log.js'
import { runGc } from './registry/gc.js'
import { openRegistryStorage } from './registry/storage/open-storage.js'
import { unimplementedVariables } from './config/unimplemented.js'
import { UsageError, parseOptions, durationOption, type Command } from './commands/command.js'
import { preflightProblems } from './commands/preflight.js'
import { VERSION } from './version.js'
import { serve } from './commands/serve.js'
import { caExport, caInfo } from './commands/ca.js'
import { cacheLs, cachePrune, cacheVerify } from './commands/cache.js'
import { warm } from './commands/warm.js'
import { exportCommand, importCommand } from './commands/bundle.js'
import { ClientError } from './client/registry-client.js'

export type { Command }

export const COMMANDS: Record<string, Command> = {
  serve,
  'config check': {
    summary: 'Validate the configuration and print it, secrets redacted.',
    help: 'Usage: crossdock config check\n\nParses every variable as `serve` would; prints NAME=value (source) with secrets redacted, then checks\nwithout listening what `serve` checks first: directories (exist or can be created, writable), the CA\n(readable, valid, its passphrase), HTPASSWD_FILE, UPSTREAM_CA_FILE, REGISTRY_TLS_*. Exit 2 on any problem.\n',
    run: async (args) => {
      parseOptions(args, {})
      const config = loadConfig()
      for (const v of describeConfig()) console.log(`${v.name}=${JSON.stringify(v.value)}  (${v.source})`)
      for (const { name, instead } of unimplementedVariables()) console.log(`warning: ${name} is not implemented: ${instead}`)
      const problems = await preflightProblems(config)
      for (const p of problems) process.stderr.write(`crossdock: configuration error: ${p}\n`)
      if (problems.length > 0) return 2
      console.log('configuration ok')
      return 0
    },
  },
  'ca info': caInfo,
  'ca export': caExport,
  'cache ls': cacheLs,
  'cache prune': cachePrune,
  'cache verify': cacheVerify,
  warm,
  export: exportCommand,
  import: importCommand,
  gc: {
    summary: 'Remove hosted-registry blobs no manifest references.',
    help: 'Usage: crossdock gc [--dry-run] [--delete-untagged] [--grace=<duration>]\n\nMark and sweep of the hosted storage (REGISTRY_STORAGE_DIR, or the bucket with STORAGE=s3), safe while the\nregistry serves, on every replica. --dry-run changes nothing;\n--delete-untagged also deletes manifests no tag reaches; --grace (default 1h) spares blobs written more\nrecently, whose manifest may still be on its way. Prints each removal and the bytes reclaimed.\n',
    run: async (args) => {
      const opts = parseOptions(args, { 'dry-run': { type: 'boolean' }, 'delete-untagged': { type: 'boolean' }, grace: { type: 'string', default: '1h' } })
      const config = loadConfig()
      const graceMs = durationOption('--grace', opts.grace)
      // Short S3 request timeouts: a blob's deletion must land well within the time a push waits
      // for gc's verdict (s3-content-clock.ts).
      const storage = await openRegistryStorage(config.storage, config.registryStorageDir, { requestTimeoutMs: 10_000 })
      try {
        await runGc({
          storage,
          uploadMaxAgeMs: config.uploadMaxAgeMs,
          log: createSilentLogger(),
          dryRun: opts['dry-run'] === true,
          deleteUntagged: opts['delete-untagged'] === true,
          graceMs,
          out: line => { process.stdout.write(`${line}\n`) },
        })
      } finally {
        storage.close()
      }
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
  ${'version, --version'.padEnd(width)} Print the version (also -v).

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
  // Nothing but `serve` listens: with no arguments it is the default; any other first word must be
  // a command, and a first flag may only ask for help or the version.
  if (argv.length === 0) return await runCommand('serve', [])
  if (argv[0].startsWith('-')) {
    let flags: { help?: boolean, version?: boolean }
    try {
      flags = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' } }, strict: true, allowPositionals: false }).values
    } catch (err) {
      return usage(`crossdock: ${(err as Error).message}`)
    }
    if (flags.version === true) { process.stdout.write(`crossdock ${VERSION}\n`); return 0 }
    process.stdout.write(helpText())
    return 0
  }
  if (argv[0] === 'version') {
    if (argv.length > 1) return usage(`crossdock version: unexpected argument ${JSON.stringify(argv[1])}`)
    process.stdout.write(`crossdock ${VERSION}\n`)
    return 0
  }
  if (argv[0] === 'help') {
    const topic = argv.slice(1).join(' ')
    if (topic === '') { process.stdout.write(helpText()); return 0 }
    const text = COMMANDS[topic]?.help ?? groupHelp(topic)
    if (text === undefined) return usage(`crossdock help: unknown command ${JSON.stringify(topic)}`)
    process.stdout.write(text)
    return 0
  }
  const pair = argv.length > 1 ? `${argv[0]} ${argv[1]}` : ''
  const name = COMMANDS[pair] !== undefined ? pair : argv[0]
  const args = argv.slice(name.split(' ').length)
  if (COMMANDS[name] === undefined) {
    const group = groupHelp(argv[0])
    if (group === undefined) return usage(`crossdock: unknown command ${JSON.stringify(argv[0])}`)
    if (argv[1] === '--help' || argv[1] === '-h') { process.stdout.write(group); return 0 }
    process.stderr.write(`crossdock: ${argv.length > 1 ? `unknown command ${JSON.stringify(pair)}` : `${argv[0]} needs a subcommand`}\n\n${group}`)
    return 2
  }
  if (args.length === 1 && (args[0] === '--help' || args[0] === '-h')) { process.stdout.write(COMMANDS[name].help); return 0 }
  return await runCommand(name, args)
}

/** Bad usage: the reason, then the top-level help, on stderr; exit 2. */
function usage (reason: string): number {
  process.stderr.write(`${reason}\n\n${helpText()}`)
  return 2
}

async function runCommand (name: string, args: string[]): Promise<number> {
  const command = COMMANDS[name]
  try {
    return await command.run(args)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`crossdock: configuration error: ${err.message}\n`)
      return 2
    }
    if (err instanceof UsageError) {
      process.stderr.write(`crossdock ${name}: ${err.message}\n\n${command.help}`)
      return 2
    }
    // A registry door's refusal or an unreachable server: its one line says it all.
    if (err instanceof ClientError) {
      process.stderr.write(`crossdock ${name}: ${err.message}\n`)
      return 1
    }
    // A system error (EACCES, ENOSPC, …) says all there is in one line; anything else is a bug,
    // whose stack is worth its lines.
    const code = (err as NodeJS.ErrnoException)?.code
    process.stderr.write(`crossdock ${name}: ${typeof code === 'string' ? (err as Error).message : ((err as Error)?.stack ?? String(err))}\n`)
    return 1
  }
}

main(process.argv.slice(2)).then(code => {
  // A failed start may leave handles open (a door that did listen, the cache's timers): exit now
  // rather than hang. stderr to a pipe or file is written synchronously, so the reason is out.
  if (code !== 0) process.exit(code)
  process.exitCode = code
}, err => {
  process.stderr.write(`crossdock: ${(err as Error)?.stack ?? String(err)}\n`)
  process.exit(1)
})
