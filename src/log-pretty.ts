/**
 * LOG_FORMAT=pretty (the default on a terminal): pino's JSON lines turned into one readable line
 * each, `HH:MM:SS.mmm LEVEL module: message  key=value …`. Same fields, same redaction (pino
 * redacts before it serialises); only the layout differs. JSON stays the format for pipes and
 * log shippers.
 */
import type { DestinationStream } from 'pino'

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' }
// Shown in the line's head, or not worth repeating on every line.
const HEAD_FIELDS = new Set(['level', 'time', 'msg', 'module', 'service', 'pid', 'hostname'])

/** One JSON log line → one human line (with its newline). Lines that are not JSON pass through. */
export function prettyLine (json: string): string {
  let o: Record<string, unknown>
  try { o = JSON.parse(json) as Record<string, unknown> } catch { return json.endsWith('\n') ? json : `${json}\n` }
  const time = typeof o.time === 'string' ? o.time.slice(11, 23) : ''
  const level = (LEVELS[o.level as number] ?? String(o.level)).padEnd(5)
  const module = typeof o.module === 'string' ? `${o.module}: ` : ''
  const msg = String(o.msg ?? '')
  // A field the message already spells out (`proxy door 127.0.0.1:3128`) is not repeated.
  const said = (v: unknown): boolean => (typeof v === 'string' || typeof v === 'number') ? msg.includes(String(v)) : Array.isArray(v) && v.length > 0 && v.every(said)
  const fields = Object.entries(o).filter(([k, v]) => !HEAD_FIELDS.has(k) && !said(v)).map(([k, v]) => `${k}=${formatValue(v)}`)
  return `${time} ${level} ${module}${msg}${fields.length > 0 ? `  ${fields.join(' ')}` : ''}\n`
}

function formatValue (v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v)
  if (v !== null && typeof v === 'object' && 'message' in v && typeof v.message === 'string') return JSON.stringify(v.message)
  return JSON.stringify(v)
}

/** A pino destination writing pretty lines to `out` (stdout). */
export function prettyDestination (out: NodeJS.WritableStream = process.stdout): DestinationStream {
  return { write: (chunk: string) => { out.write(prettyLine(chunk.endsWith('\n') ? chunk.slice(0, -1) : chunk)) } }
}
