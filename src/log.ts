/**
 * The logger: pino JSON on stdout, one line per request and per tunnel. Secrets never reach a log:
 * header values for Authorization, Proxy-Authorization and cookies are redacted by path, and
 * credentials are never put in log fields in the first place (callers log hosts, not URLs with userinfo).
 */
import { pino, type Logger, type DestinationStream } from 'pino'

import { prettyDestination } from './log-pretty.js'

export type { Logger }

const REDACT = [
  'req.headers.authorization', 'req.headers["proxy-authorization"]', 'req.headers.cookie',
  'headers.authorization', 'headers["proxy-authorization"]', 'headers.cookie',
  'res.headers["set-cookie"]', 'password', 'token', '*.password', '*.token',
]

/**
 * `format` (LOG_FORMAT): json, pretty, or auto (pretty when stdout is a terminal). An explicit
 * `destination` (tests) always gets JSON.
 */
export function createLogger (opts: { level: string, format?: 'json' | 'pretty' | 'auto', destination?: DestinationStream }): Logger {
  const pretty = opts.destination === undefined && (opts.format === 'pretty' || (opts.format === 'auto' && process.stdout.isTTY === true))
  return pino({
    level: opts.level,
    base: { service: 'crossdock' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT, censor: '[redacted]' },
  }, opts.destination ?? (pretty ? prettyDestination() : pino.destination({ dest: 1, sync: false })))
}

/** A logger that drops everything, for tests and CLI commands that do not want request logs. */
export function createSilentLogger (): Logger {
  return pino({ level: 'silent' })
}
