/**
 * Several crossdock replicas as operators run them (README "Running several replicas"), for
 * end-to-end tests and benchmarks: real processes (`node dist/cli.js serve`), one bucket on a real
 * Ceph RGW, one root CA, optionally one redis-server, and nginx round robin in front of their
 * registry doors.
 *
 *                       ┌──► replica 1  (proxy door :p1, registry door :r1, own CACHE_DIR) ──┐
 *   clients ──► nginx ──┼──► replica 2  (…)                                                  ├──► RGW bucket (STORAGE=s3)
 *      <address>:<lb>   └──► replica 3  (…)                                                  ├──► redis-server (REDIS_URL)
 *                             each also reachable directly: proxy door, registry door        ┘
 *
 * Every daemon binds the caller's loopback address (RGW :7480/:3300 and redis :6379 are fixed
 * ports there, so one cluster per address); each is a direct child of the test process, stopped by
 * its own PID. The CA is made once with openssl and handed to every replica as
 * CA_CRT_FILE/CA_KEY_FILE, as an operator would from a secret.
 *
 * REDIS_URL is passed when `redis: true`. A configuration that does not know the variable yet
 * ignores it (config reads only the variables in its table), so the same harness runs before and
 * after the Redis coordination lands.
 *
 * Failure helpers for the cases the issue lists: `killReplica` (SIGKILL) or `stopReplica` / `restartReplica`,
 * `killRedis` or `stopRedis` / `startRedis`, `stopGateway` / `startGateway` (radosgw only: the
 * memstore OSD keeps the data while it runs). `metricPerReplica` tells which replica is doing
 * something right now (answering a request, filling a blob), to kill that one.
 */
import { mkdirSync } from 'node:fs'
import { S3Client, CreateBucketCommand } from '@aws-sdk/client-s3'
import { startCrossdock, runOk, freePort, waitFor, type Crossdock, type LogLine, type Scope } from './e2e/index.js'
import { startRgw, type Rgw } from './rgw.js'
import { startRedis, type Redis } from './redis.js'
import { startNginxLb, type NginxLb } from './nginx-lb.js'
import { sample } from './metrics-text.js'

export interface ClusterOptions {
  /** The loopback address everything binds (one cluster per address: see the header). */
  address: string
  /** How many crossdock replicas (default 3). */
  replicas?: number
  /** Start redis-server and give every replica REDIS_URL (default false). */
  redis?: boolean
  /** The bucket, created here (default `crossdock`). */
  bucket?: string
  /** S3_PREFIX (default none). */
  prefix?: string
  /** UPSTREAM_CONNECT_TO pairs for every replica, e.g. { 'registry-1.docker.io:443': '127.0.0.46:5443' }. */
  connectTo?: Record<string, string>
  /** Anything else every replica gets (REGISTRIES, HOSTED_HOSTNAMES, LOG_LEVEL…). */
  env?: Record<string, string>
  /** An RGW already running on `address` (a benchmark sharing it with other contenders). */
  rgw?: Rgw
}

export interface ClusterStartTimes {
  /** From the call to the cluster answering through the load balancer. */
  totalMs: number
  rgwMs: number
  redisMs: number
  replicasMs: number
  lbMs: number
}

export interface Cluster {
  readonly rgw: Rgw
  readonly bucket: string
  /** An S3 client with the test credentials (list or read objects behind crossdock's back). */
  readonly s3: S3Client
  readonly lb: NginxLb
  readonly replicas: Crossdock[]
  /** The shared root CA every replica presents (clients trust this one file). */
  readonly caCert: string
  /** redis://… when started with `redis: true`. */
  readonly redisUrl: string | undefined
  /** The environment every replica shares (without its own ports and directories). */
  readonly env: Readonly<Record<string, string>>
  readonly startTimes: ClusterStartTimes
  /** Index of the replica whose registry door is `host:port` (nginx's $upstream_addr), or -1. */
  replicaAt: (registryAddress: string) => number
  /** Per replica, how many of its request log lines match. */
  requestsPerReplica: (match: (line: LogLine) => boolean) => number[]
  /**
   * Per replica, one sample of its /metrics (proxy door), e.g. `crossdock_http_requests_in_flight`
   * `{ door: 'registry' }` (which replica is answering a request right now) or
   * `crossdock_cache_fills_in_flight` (which one is filling); undefined for a replica that is down.
   */
  metricPerReplica: (name: string, labels?: Record<string, string>) => Promise<Array<number | undefined>>
  /** SIGKILL replica `i` (no shutdown code runs); resolves once it has exited. */
  killReplica: (i: number) => Promise<void>
  /** SIGTERM replica `i` (a planned restart: it drains, up to SHUTDOWN_TIMEOUT); resolves once it has exited. */
  stopReplica: (i: number) => Promise<void>
  /** Starts replica `i` again on its ports and directories; resolves once it answers. */
  restartReplica: (i: number) => Promise<void>
  /** SIGKILL redis-server (state lost, as in a crash); no-op without `redis: true`. */
  killRedis: () => Promise<void>
  /** SIGTERM redis-server (a planned stop); no-op without `redis: true`. */
  stopRedis: () => Promise<void>
  /** Starts a fresh (empty) redis-server on the same URL. */
  startRedis: () => Promise<void>
  stopGateway: () => Promise<void>
  startGateway: () => Promise<void>
}

export async function startCluster (scope: Scope, opts: ClusterOptions): Promise<Cluster> {
  const started = Date.now()
  const n = opts.replicas ?? 3
  const bucket = opts.bucket ?? 'crossdock'

  let t = Date.now()
  const rgw = opts.rgw ?? await startRgw(opts.address, ensureDir(scope.path('rgw')))
  if (opts.rgw === undefined) scope.defer('stop rgw', rgw.stop)
  const rgwMs = opts.rgw === undefined ? Date.now() - t : 0
  const s3 = new S3Client({ region: rgw.region, endpoint: rgw.endpoint, forcePathStyle: true, credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey } })
  scope.defer('close the S3 client', () => s3.destroy())
  await s3.send(new CreateBucketCommand({ Bucket: bucket }))

  t = Date.now()
  const redisDir = ensureDir(scope.path('redis'))
  let redis: Redis | undefined = opts.redis === true ? await startRedis(opts.address, redisDir) : undefined
  scope.defer('stop redis', async () => { await redis?.stop() })
  const redisMs = Date.now() - t

  const ca = await makeSharedCa(ensureDir(scope.path('cluster-ca')))
  const env: Record<string, string> = {
    STORAGE: 's3',
    S3_ENDPOINT: rgw.endpoint,
    S3_BUCKET: bucket,
    S3_REGION: rgw.region,
    S3_ACCESS_KEY_ID: rgw.accessKeyId,
    S3_SECRET_ACCESS_KEY: rgw.secretAccessKey,
    ...(opts.prefix !== undefined ? { S3_PREFIX: opts.prefix } : {}),
    CA_CRT_FILE: ca.crt,
    CA_KEY_FILE: ca.key,
    ...(redis !== undefined ? { REDIS_URL: redis.url } : {}),
    ...opts.env,
  }

  t = Date.now()
  // Fixed registry ports: nginx's upstream list is written before the replicas start, and a
  // restarted replica must come back where nginx sends its share.
  const ports = await Promise.all(Array.from({ length: n }, async () => await freePort(opts.address)))
  const replicas = await Promise.all(ports.map(async (registryPort, i) => {
    // Three Node processes loading at once on two busy cores: 20 s was seen not to be enough.
    const c = await startCrossdock(scope, { host: opts.address, name: `replica-${i + 1}`, registryPort, connectTo: opts.connectTo, env, readyTimeoutMs: 90_000 })
    scope.attachLog(`replica ${i + 1}`, () => c.logs.slice(-15).map(l => JSON.stringify(l)).join('\n'))
    return c
  }))
  const replicasMs = Date.now() - t

  t = Date.now()
  const lb = await startNginxLb(ensureDir(scope.path('nginx')), { address: opts.address, backends: ports.map(p => `${opts.address}:${p}`) })
  scope.defer('stop nginx', lb.stop)
  const lbMs = Date.now() - t
  const v2 = await fetch(`${lb.url}/v2/`)
  if (v2.status !== 200) throw new Error(`cluster: GET ${lb.url}/v2/ answered ${v2.status}`)

  const replicaAt = (address: string): number => ports.findIndex(p => address === `${opts.address}:${p}`)
  return {
    rgw,
    bucket,
    s3,
    lb,
    replicas,
    caCert: ca.crt,
    get redisUrl () { return redis?.url },
    env,
    startTimes: { totalMs: Date.now() - started, rgwMs, redisMs, replicasMs, lbMs },
    replicaAt,
    requestsPerReplica: match => replicas.map(r => r.logs.filter(match).length),
    metricPerReplica: async (name, labels = {}) => await Promise.all(replicas.map(async r => {
      if (!r.running()) return undefined
      const res = await fetch(`${r.proxyUrl}/metrics`).catch(() => undefined)
      return res?.status === 200 ? sample(await res.text(), name, labels) ?? 0 : undefined
    })),
    killReplica: async i => { await replicas[i]?.kill() },
    stopReplica: async i => {
      const r = replicas[i]
      const pid = r?.pid()
      if (r === undefined || pid === undefined || !r.running()) return
      // Not Crossdock.stop(): its 5 s grace would cut a drain that SHUTDOWN_TIMEOUT allows.
      process.kill(pid, 'SIGTERM')
      await waitFor(`replica ${i + 1} to drain and exit`, () => !r.running(), { timeoutMs: 60_000, intervalMs: 50 })
      await r.stop() // already gone: closes its log
    },
    restartReplica: async i => { await replicas[i]?.start() },
    killRedis: async () => {
      if (redis === undefined) return
      process.kill(redis.pid, 'SIGKILL')
      await redis.stop() // already dead: waits for the exit and closes its log
    },
    stopRedis: async () => { await redis?.stop() },
    startRedis: async () => {
      if (opts.redis !== true) throw new Error('cluster: started without redis')
      redis = await startRedis(opts.address, redisDir)
    },
    stopGateway: rgw.stopGateway,
    startGateway: rgw.startGateway,
  }
}

function ensureDir (dir: string): string {
  mkdirSync(dir, { recursive: true })
  return dir
}

/**
 * One root CA for every replica (clients trust one file, and any replica's proxy door mints leaves
 * they accept): RSA-2048, CA:TRUE and keyCertSign, as `crossdock serve` would make it.
 */
async function makeSharedCa (dir: string): Promise<{ crt: string, key: string }> {
  const crt = `${dir}/ca.crt`
  const key = `${dir}/ca.key`
  await runOk('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', crt, '-days', '30',
    '-subj', '/CN=crossdock cluster test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  return { crt, key }
}
