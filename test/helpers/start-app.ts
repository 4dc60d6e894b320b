/**
 * Starts the real app in-process on loopback, port 0, with temp directories, captured JSON logs and
 * the TEST-ONLY upstream CA trusted. `env` adds or overrides configuration variables.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { createLogger } from '../../src/log.js'
import { createApp, type App, type AppTestOptions } from '../../src/app.js'
import { loadConfig, type Config } from '../../src/config/index.js'
import { TEST_CA_FILE } from './fake-upstream.js'

export interface StartedApp {
  app: App
  config: Config
  dir: string
  proxyPort: number
  registryPort: number
  proxyUrl: string
  caPem: string
  /** Every log line so far, parsed. */
  logs: Array<Record<string, any>>
  stop: () => Promise<void>
}

export async function startApp (env: Record<string, string> = {}, opts: { dir?: string, keepDir?: boolean, test?: AppTestOptions } = {}): Promise<StartedApp> {
  const dir = opts.dir ?? await mkdtemp(join(tmpdir(), 'crossdock-test-'))
  const config = loadConfig({
    PROXY_PORT: '0',
    REGISTRY_PORT: '0',
    LISTEN_HOST: '127.0.0.1',
    CA_DIR: join(dir, 'ca'),
    CACHE_DIR: join(dir, 'cache'),
    REGISTRY_STORAGE_DIR: join(dir, 'registry'),
    UPSTREAM_CA_FILE: TEST_CA_FILE,
    LOG_LEVEL: 'debug',
    // Tests of other features see the cache as their clients drive it (upstream counts, MISS/HIT);
    // prefetch tests turn it on (PREFETCH_CONCURRENCY).
    PREFETCH_CONCURRENCY: '0',
    ...env,
  }, dir)
  const logs: Array<Record<string, any>> = []
  const sink = new Writable({
    write (chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') logs.push(JSON.parse(line))
      cb()
    },
  })
  // The production logger (its redaction included), writing into `logs`.
  const log = createLogger({ level: config.logLevel, destination: sink })
  const app = await createApp({ config, log, test: opts.test })
  await app.start()
  const { proxy, registry } = app.addresses()
  const proxyPort = Number(proxy.split(':').pop())
  const registryPort = registry === '' ? 0 : Number(registry.split(':').pop())
  return {
    app,
    config,
    dir,
    proxyPort,
    registryPort,
    proxyUrl: `http://127.0.0.1:${proxyPort}`,
    caPem: await readFile(join(config.caDir, 'ca.crt'), 'utf8'),
    logs,
    stop: async () => {
      await app.stop()
      if (opts.keepDir !== true && opts.dir === undefined) await rm(dir, { recursive: true, force: true })
    },
  }
}
