/**
 * The comparison for bench/cluster.ts: CNCF distribution 2.8 (Debian's `docker-registry`) as it is
 * run on several machines — N instances on one S3 bucket (its s3 driver, the same RGW crossdock
 * uses), one `http.secret` so an upload begun on one instance continues on another, behind the
 * same nginx configuration as crossdock's replicas (test/helpers/nginx-lb.ts).
 *
 * AWS_CA_BUNDLE (set on some machines, this one included) is removed from its environment: with it,
 * distribution's aws-sdk-go refuses to start ("HTTPClient's transport unsupported type").
 *
 * `storage.redirect.disable`: blobs stream through the registry as crossdock's do (distribution's
 * default would send clients a 307 to a presigned RGW URL). With `proxy.remoteurl` each instance is
 * a pull-through cache of that upstream, on the same shared storage.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startDaemon, waitFor, freePort, FIXTURE, SYSTEM_BUNDLE, type Daemon, type Scope } from '../../test/helpers/e2e/index.js'
import { startNginxLb, type NginxLb } from '../../test/helpers/nginx-lb.js'
import type { Rgw } from '../../test/helpers/rgw.js'

export interface DistributionClusterOptions {
  address: string
  count: number
  rgw: Rgw
  bucket: string
  /** The s3 driver's rootdirectory inside the bucket. */
  root: string
  /** Pull-through cache of this upstream URL (trusting the fixture CA). */
  remoteUrl?: string
  /** Names the dirs under the scope. */
  name: string
}

export interface DistributionCluster {
  lb: NginxLb
  pids: () => number[]
  stop: () => Promise<void>
}

export async function startDistributionCluster (scope: Scope, o: DistributionClusterOptions): Promise<DistributionCluster> {
  const base = scope.path(o.name)
  mkdirSync(base, { recursive: true })
  const bundle = join(base, 'ca-bundle.crt')
  writeFileSync(bundle, (existsSync(SYSTEM_BUNDLE) ? readFileSync(SYSTEM_BUNDLE, 'utf8') : '') + readFileSync(FIXTURE.testCa, 'utf8'))
  const ports = await Promise.all(Array.from({ length: o.count }, async () => await freePort(o.address)))
  const daemons: Daemon[] = await Promise.all(ports.map(async (port, i) => {
    const config = {
      version: '0.1',
      log: { level: 'warn', formatter: 'text', accesslog: { disabled: true } },
      storage: {
        s3: {
          region: o.rgw.region,
          regionendpoint: o.rgw.endpoint,
          bucket: o.bucket,
          accesskey: o.rgw.accessKeyId,
          secretkey: o.rgw.secretAccessKey,
          secure: false,
          v4auth: true,
          rootdirectory: o.root,
        },
        delete: { enabled: true },
        redirect: { disable: true },
        cache: { blobdescriptor: 'inmemory' },
      },
      http: { addr: `${o.address}:${port}`, secret: 'crossdock-bench-cluster' },
      health: { storagedriver: { enabled: false } },
      ...(o.remoteUrl !== undefined ? { proxy: { remoteurl: o.remoteUrl } } : {}),
    }
    // distribution reads YAML, and JSON is YAML.
    const file = join(base, `config-${i + 1}.yml`)
    writeFileSync(file, JSON.stringify(config, null, 2))
    const d = startDaemon(`distribution-${i + 1}`, 'docker-registry', ['serve', file], { env: { SSL_CERT_FILE: bundle, AWS_CA_BUNDLE: undefined }, logFile: join(base, `registry-${i + 1}.log`) })
    scope.defer(`stop distribution ${i + 1}`, async () => { await d.stop() })
    await waitFor(`distribution ${i + 1} /v2/`, async () => (await fetch(`http://${o.address}:${port}/v2/`)).status === 200, {
      timeoutMs: 20_000,
      intervalMs: 100,
      abort: () => d.hasExited() ? `exited: ${d.logTail(1000)}` : undefined,
    })
    return d
  }))
  const lb = await startNginxLb(join(base, 'nginx'), { address: o.address, backends: ports.map(p => `${o.address}:${p}`) })
  scope.defer(`stop ${o.name} nginx`, lb.stop)
  return {
    lb,
    pids: () => daemons.map(d => d.pid),
    stop: async () => {
      await lb.stop()
      for (const d of daemons) await d.stop()
    },
  }
}
