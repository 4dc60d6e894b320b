/**
 * rpardini/docker-registry-proxy variables crossdock reads nowhere. An operator migrating with the
 * old environment is told, once per variable at start, what crossdock does instead, rather than
 * having a setting silently ignored. (PROXY_CONNECT_*_TIMEOUT are not here: crossdock reads them.)
 */
export const UNIMPLEMENTED_VARIABLES: Readonly<Record<string, string>> = {
  PROXY_REQUEST_BUFFERING: 'pushes are always streamed to the upstream, never buffered (what rpardini\'s false did)',
  SEND_TIMEOUT: 'writes to clients have no timeout of their own (a multi-GB pull may be slow); idle keep-alive connections close after KEEPALIVE_TIMEOUT',
  CLIENT_BODY_TIMEOUT: 'request bodies (pushes) have no timeout of their own; unfinished hosted uploads are purged after UPLOAD_MAX_AGE',
  PROXY_SEND_TIMEOUT: 'writes to upstreams have no timeout of their own; PROXY_READ_TIMEOUT bounds the wait for their answer',
  DEBUG: 'there is no mitmweb; set LOG_LEVEL=debug for one line per request and tunnel',
  DEBUG_HUB: 'there is no mitmweb; set LOG_LEVEL=debug (and VERIFY_SSL stays as set)',
  DEBUG_NGINX: 'there is no nginx; set LOG_LEVEL=debug',
  CA_SRL_FILE: 'certificate serial numbers are random, so no serial file is read or written',
}

/** The unimplemented rpardini variables set in `env`, each with what crossdock does instead. */
export function unimplementedVariables (env: Record<string, string | undefined> = process.env): Array<{ name: string, instead: string }> {
  return Object.entries(UNIMPLEMENTED_VARIABLES).filter(([name]) => env[name] !== undefined).map(([name, instead]) => ({ name, instead }))
}
