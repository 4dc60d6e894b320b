/**
 * The composition root: config → logger → CA → stores → upstream client → servers.
 * `start()` listens on both doors; `stop()` closes them. Tests start the same app on port 0.
 */
import type { Config } from './config/index.js'
import type { Logger } from './log.js'

export interface App {
  start: () => Promise<void>
  stop: () => Promise<void>
  /** `host:port` of each door once started. */
  addresses: () => { proxy: string, registry: string }
}

export async function createApp ({ config, log }: { config: Config, log: Logger }): Promise<App> {
  void config
  void log
  throw new Error('createApp: not wired yet')
}
