/**
 * `crossdock serve`: run both doors until SIGTERM or SIGINT, then shut down gracefully:
 *
 *   signal ─► stop accepting, close raw tunnels, /readyz 503
 *          ─► requests and cache fills in flight finish (up to SHUTDOWN_TIMEOUT), idle
 *             keep-alive connections are closed as they become idle
 *          ─► whatever is left is cut ─► logs flushed ─► exit 0
 *
 * A second signal while draining exits at once (1): an operator pressing Ctrl-C twice means it.
 */
import { loadConfig } from '../config/index.js'
import { createLogger, type Logger } from '../log.js'
import { hostname } from 'node:os'
import { unimplementedVariables } from '../config/unimplemented.js'
import { VERSION } from '../version.js'
import { parseOptions, type Command } from './command.js'
import { preflight } from './preflight.js'

export const serve: Command = {
  summary: 'Run the service (the default).',
  help: `Usage: crossdock serve

Starts the proxy door (PROXY_PORT) and the registry door (REGISTRY_PORT); both also answer
/healthz, /readyz and /metrics. Runs until SIGTERM or SIGINT, then lets requests and cache fills in
flight finish for up to SHUTDOWN_TIMEOUT (default 30s) and exits 0. A second signal exits at once.
`,
  run: async (args) => {
    parseOptions(args, {})
    const config = loadConfig()
    // Before anything is created or listens: a bad directory, CA or htpasswd file is one line.
    await preflight(config)
    const log = createLogger({ level: config.logLevel, format: config.logFormat })
    for (const { name, instead } of unimplementedVariables()) log.warn({ variable: name }, `${name} (docker-registry-proxy) is not implemented: ${instead}`)
    // Loaded here, not at the top: the other commands (and --help) need none of the service's modules.
    const { createApp } = await import('../app.js')
    const app = await createApp({ config, log })
    await app.start()
    const { proxy, registry } = app.addresses()
    log.info({ proxy, registry, version: VERSION }, `crossdock listening: proxy door ${proxy}, registry door ${registry} (version ${VERSION})`)
    log.info({ registries: config.registries }, `intercepting ${config.registries.join(' ')} (REGISTRIES)`)
    const base = `http://${publicHost(proxy)}`
    log.info({ caUrl: `${base}/ca.crt`, setup: `curl -fsS ${base}/setup/systemd | sudo sh` }, `hosts trust ${base}/ca.crt; set up a docker host with: curl -fsS ${base}/setup/systemd | sudo sh`)

    const signal = await new Promise<NodeJS.Signals>(resolve => {
      const on = (s: NodeJS.Signals): void => {
        process.off('SIGTERM', on)
        process.off('SIGINT', on)
        resolve(s)
      }
      process.on('SIGTERM', on)
      process.on('SIGINT', on)
    })
    const started = Date.now()
    log.info({ signal, timeoutMs: config.timeouts.shutdownMs }, 'shutting down: finishing requests in flight')
    const again = (s: NodeJS.Signals): void => {
      log.warn({ signal: s }, 'second signal while shutting down: exiting now')
      void flush(log).finally(() => process.exit(1))
    }
    process.once('SIGTERM', again)
    process.once('SIGINT', again)
    await app.stop()
    log.info({ ms: Date.now() - started }, 'stopped')
    await flush(log)
    // Everything is closed; should a handle we do not own keep the loop alive, do not hang on it.
    setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref()
    return 0
  },
}

/** `host:port` of the proxy door as other hosts would write it: a wildcard address becomes this host's name. */
function publicHost (address: string): string {
  const m = /^(.*):(\d+)$/.exec(address)
  if (m === null) return address
  return ['0.0.0.0', '[::]'].includes(m[1]) ? `${hostname()}:${m[2]}` : address
}

async function flush (log: Logger): Promise<void> {
  await new Promise<void>(resolve => log.flush(() => resolve()))
}
