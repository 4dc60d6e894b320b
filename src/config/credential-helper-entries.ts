/**
 * CREDENTIAL_HELPERS entries: `<host>:<helper>`, space or comma separated, as the `credHelpers` map
 * of Docker's config.json (`{"123.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login"}` is
 * `123.dkr.ecr.eu-west-1.amazonaws.com:ecr-login`). The helper is the program
 * `docker-credential-<helper>`, looked up on PATH; its name is restricted to what such programs are
 * called, so nothing but a program name is ever built from configuration.
 */
import { fail, parseHost, splitList } from './parse.js'

export interface CredentialHelperEntry {
  /** Registry host (lower case, `:port` kept when not 443), or a token realm host. */
  host: string
  /** The `<helper>` of `docker-credential-<helper>`. */
  helper: string
}

const HELPER_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/i

export function parseCredentialHelpers (name: string, value: string): CredentialHelperEntry[] {
  const seen = new Set<string>()
  return splitList(value).map(entry => {
    // The helper comes after the *last* colon: a host may carry a port (registry.internal:5000:pass).
    const colon = entry.lastIndexOf(':')
    const helper = colon < 0 ? '' : entry.slice(colon + 1)
    if (colon <= 0 || !HELPER_NAME.test(helper)) fail(name, entry, 'entries host:helper such as 123.dkr.ecr.eu-west-1.amazonaws.com:ecr-login (runs docker-credential-ecr-login)')
    const host = parseHost(name, entry.slice(0, colon)).replace(/:443$/, '')
    if (seen.has(host)) fail(name, entry, `one helper per host (two entries for ${host})`)
    seen.add(host)
    return { host, helper }
  })
}
