/**
 * What every operator command shares: the Command shape of cli.ts's COMMANDS table, option parsing
 * (node:util parseArgs, strict: an unknown option is a usage error, exit 2), human-readable sizes,
 * and progress lines that show on a terminal only (stderr is a TTY) so piped output stays clean.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { ConfigError } from '../errors.js'
import { parseDuration, parseSize } from '../config/parse.js'

export interface Command {
  /** One line for `crossdock --help`. */
  summary: string
  /** The whole text of `crossdock COMMAND --help`. */
  help: string
  /** Runs with the arguments after the command words; resolves with the exit code. */
  run: (args: string[]) => Promise<number>
}

/** Bad usage: cli.ts prints the message and the command's help, and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
}

type Options = NonNullable<ParseArgsConfig['options']>

/** Parses `--name value` / `--name=value` / `--flag`; no positionals. */
export function parseOptions<O extends Options> (args: string[], options: O) {
  try {
    return parseArgs({ args, options, strict: true as const, allowPositionals: false as const }).values
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}

/** A size option (`512m`, `32g`) in bytes; the same syntax as CACHE_MAX_SIZE. */
export function sizeOption (name: string, value: string): number {
  try { return parseSize(name, value) } catch (err) { throw asUsage(err) }
}

/** A duration option (`7d`, `12h`) in milliseconds; the same syntax as CACHE_INACTIVE. */
export function durationOption (name: string, value: string): number {
  try { return parseDuration(name, value) } catch (err) { throw asUsage(err) }
}

function asUsage (err: unknown): unknown {
  return err instanceof ConfigError ? new UsageError(err.message) : err
}

/** 1536 → "1.5 KiB". */
export function formatBytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`
}

export interface Progress {
  /** Replaces the progress line (at most ~10 times a second). */
  update: (text: string) => void
  /** Clears the line. */
  done: () => void
}

/** A one-line progress display on stderr when it is a terminal; does nothing when piped. */
export function createProgress (stream: NodeJS.WriteStream = process.stderr): Progress {
  if (stream.isTTY !== true) return { update: () => {}, done: () => {} }
  let last = 0
  let shown = false
  return {
    update: text => {
      const now = Date.now()
      if (now - last < 100) return
      last = now
      shown = true
      stream.write(`\r\x1b[K${text}`)
    },
    done: () => { if (shown) stream.write('\r\x1b[K') },
  }
}
