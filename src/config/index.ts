/**
 * crossdock's configuration: one table of environment variables (rpardini-compatible names first,
 * then crossdock's own), read here and nowhere else. `loadConfig` parses every value before anything
 * listens; a bad value throws a ConfigError naming the variable, the value and what is expected.
 */
import { resolve } from 'node:path'
import envVar from 'env-var'
import {
  parseSize, parseRate, parseDuration, parseBool, parsePort, parseHost, splitList, parseConnectTo,
  parseAuthRegistries, parseRegex, parseLogLevel, parseUrl, parseDestinationRules, parseCount, parseListenHost, parseChoice, fail,
  type ConnectTo, type RegistryCredential, type DestinationRule,
} from './parse.js'
import { ConfigError } from '../errors.js'
import { parsePullPatterns, type PullPattern } from './pull-patterns.js'
import { parseCredentialHelpers, type CredentialHelperEntry } from './credential-helper-entries.js'
import { parseStorage, type StorageConfig, type S3Config } from './storage.js'
import { parseCluster, type ClusterConfig } from './cluster.js'

export type { ConnectTo, RegistryCredential, DestinationRule, PullPattern, CredentialHelperEntry, StorageConfig, S3Config, ClusterConfig }

export interface VariableSpec {
  name: string
  default: string
  describe: string
  secret?: boolean
}

/** Every variable crossdock reads, with its default and meaning (the README's table is made from this). */
export const VARIABLES: readonly VariableSpec[] = [
  { name: 'REGISTRIES', default: 'registry.k8s.io gcr.io quay.io ghcr.io', describe: 'Upstream registry hosts to intercept and cache, besides Docker Hub (always in). Space or comma separated.' },
  { name: 'AUTH_REGISTRIES', default: '', secret: true, describe: 'Upstream credentials: host:user:password entries. The host is the registry or its token realm (auth.docker.io for Docker Hub).' },
  { name: 'AUTH_REGISTRIES_DELIMITER', default: ' ', describe: 'Separator between AUTH_REGISTRIES entries (e.g. ;;;).' },
  { name: 'AUTH_REGISTRY_DELIMITER', default: ':', describe: 'Separator between host, user and password in an entry (e.g. :::).' },
  { name: 'CREDENTIAL_HELPERS', default: '', describe: 'host:helper entries: upstream credentials from docker-credential-<helper> (on PATH), asked again on a 401 and after CREDENTIAL_HELPER_CACHE_TIME.' },
  { name: 'CREDENTIAL_HELPER_TIMEOUT', default: '10s', describe: 'A credential helper still running after this long is killed; the pull fails with 502.' },
  { name: 'CREDENTIAL_HELPER_CACHE_TIME', default: '10m', describe: 'How long a credential helper\'s answer is reused before the helper is asked again.' },
  { name: 'PULL_ALLOW', default: '', describe: 'When set, only upstream repositories matching these host/repository globs may be pulled (e.g. docker.io/library/* ghcr.io/my-org/**); others get 403 DENIED.' },
  { name: 'PULL_DENY', default: '', describe: 'Upstream repositories (host/repository globs) that may not be pulled; deny wins over PULL_ALLOW. Hosted repositories are not affected.' },
  { name: 'CACHE_MAX_SIZE', default: '32g', describe: 'Upper bound of the pull-through cache on disk (nginx size syntax); least recently read goes first.' },
  { name: 'CACHE_INACTIVE', default: '60d', describe: 'Cache entries not read for this long are dropped.' },
  { name: 'LOCAL_CACHE_MAX_SIZE', default: '4g', describe: 'With STORAGE=s3: upper bound of each replica\'s local disk tier in CACHE_DIR (nginx size syntax), in front of the bucket; hot layers are served from it without reading S3.' },
  { name: 'CACHE_MIN_FREE', default: '1g', describe: 'Free disk space below which /readyz reports not ready and misses stream through uncached.' },
  { name: 'PREFETCH_CONCURRENCY', default: '8', describe: 'When an image manifest passes to a client, fetch its config and layers that are not cached yet, this many at once, before the client asks (0 turns prefetching off).' },
  { name: 'PREFETCH_ADAPTIVE', default: 'true', describe: 'Prefetch starts another download from a host only while more downloads from it (the clients\' included) have raised its throughput: on a link that caps each connection it grows to PREFETCH_CONCURRENCY, on a full shared link it stops at the clients\' own after one probe, so the layers a client unpacks first are not slowed (false: PREFETCH_CONCURRENCY at once, whatever the link).' },
  { name: 'PREFETCH_IMAGE_BUDGET', default: '2g', describe: 'Bytes prefetched per image manifest at most (nginx size syntax); the rest is fetched when a client asks for it.' },
  { name: 'ENABLE_MANIFEST_CACHE', default: 'false', describe: 'Serve tags from the cache without asking upstream while their tier\'s TTL is fresh.' },
  { name: 'MANIFEST_CACHE_PRIMARY_REGEX', default: '(stable|nightly|production|test)', describe: 'Tags of the primary TTL tier.' },
  { name: 'MANIFEST_CACHE_PRIMARY_TIME', default: '10m', describe: 'TTL of the primary tier.' },
  { name: 'MANIFEST_CACHE_SECONDARY_REGEX', default: '(.*)(\\d|\\.)+(.*)(\\d|\\.)+(.*)(\\d|\\.)+', describe: 'Tags of the secondary TTL tier (explicitly versioned tags).' },
  { name: 'MANIFEST_CACHE_SECONDARY_TIME', default: '60d', describe: 'TTL of the secondary tier.' },
  { name: 'MANIFEST_CACHE_DEFAULT_TIME', default: '1h', describe: 'TTL of every other tag (e.g. latest).' },
  { name: 'ALLOW_PUSH', default: 'false', describe: 'Through the proxy door, pass pushes to upstream registries through (streamed, uncached); otherwise 405.' },
  { name: 'VERIFY_SSL', default: 'true', describe: 'Verify upstream TLS certificates.' },
  { name: 'DISABLE_IPV6', default: 'false', describe: 'Connect to upstreams over IPv4 only.' },
  { name: 'PROXY_CONNECT_TIMEOUT', default: '60s', describe: 'Timeout to connect to an upstream registry (raw tunnels: PROXY_CONNECT_CONNECT_TIMEOUT).' },
  { name: 'PROXY_READ_TIMEOUT', default: '900s', describe: 'Timeout between two reads from an upstream (headers and body).' },
  { name: 'PROXY_CONNECT_CONNECT_TIMEOUT', default: '60s', describe: 'Raw CONNECT tunnels: timeout to connect to the far end (rpardini\'s name).' },
  { name: 'PROXY_CONNECT_READ_TIMEOUT', default: '60s', describe: 'Raw CONNECT tunnels: closed when nothing was read from or written to the far end for this long.' },
  { name: 'PROXY_CONNECT_SEND_TIMEOUT', default: '60s', describe: 'Raw CONNECT tunnels: closed when nothing was read from or written to the client for this long (a client that stopped reading).' },
  { name: 'MAX_TUNNELS', default: '1024', describe: 'Raw CONNECT tunnels open at once (each holds two descriptors); beyond, CONNECT gets 503.' },
  { name: 'TUNNEL_ALLOW', default: '', describe: 'When set, raw tunnels go only to these host globs and CIDRs (e.g. *.docker.com *.docker.io 10.0.0.0/8). A CIDR here also opens an address refused by default.' },
  { name: 'TUNNEL_DENY', default: '', describe: 'Host globs and CIDRs refused for tunnels, redirects and token realms, on top of loopback, link-local, unspecified, multicast and crossdock\'s own sockets.' },
  { name: 'CLIENT_HEADER_TIMEOUT', default: '60s', describe: 'Time a client has to send its request headers.' },
  { name: 'KEEPALIVE_TIMEOUT', default: '300s', describe: 'Idle time before a client keep-alive connection is closed.' },
  { name: 'SHUTDOWN_TIMEOUT', default: '30s', describe: 'On SIGTERM/SIGINT, how long requests and cache fills in flight may take to finish before they are cut.' },
  { name: 'PROXY_PORT', default: '3128', describe: 'Port of the proxy door (CONNECT, /ca.crt, /setup/*, /healthz, /metrics).' },
  { name: 'REGISTRY_PORT', default: '5000', describe: 'Port of the registry door (hosted registry and path-prefixed pull-through). 0 picks a free port.' },
  { name: 'LISTEN_HOST', default: '0.0.0.0', describe: 'Address both doors listen on.' },
  { name: 'CONNECT_ALLOWED_PORTS', default: '443', describe: 'Ports CONNECT may reach (tunnels included), besides the ports of configured registries and HOSTED_HOSTNAMES. Others get 403.' },
  { name: 'HOSTED_HOSTNAMES', default: '', describe: 'Host names whose CONNECTs are served by the hosted registry (e.g. registry.internal).' },
  { name: 'CA_DIR', default: './ca', describe: 'Where the root CA (ca.crt, ca.key) is created on first start and reused.' },
  { name: 'CA_CRT_FILE', default: '', describe: 'The operator\'s own CA certificate (PEM); with CA_KEY_FILE.' },
  { name: 'CA_KEY_FILE', default: '', secret: true, describe: 'The operator\'s own CA private key (PEM); with CA_CRT_FILE.' },
  { name: 'CA_KEY_PASSPHRASE', default: '', secret: true, describe: 'Passphrase of an encrypted CA key; empty means rpardini\'s `foobar` for an encrypted key.' },
  { name: 'CACHE_DIR', default: './docker_mirror_cache', describe: 'The pull-through cache directory.' },
  { name: 'REGISTRY_STORAGE_DIR', default: './registry_data', describe: 'The hosted registry\'s storage directory.' },
  { name: 'REGISTRY_TLS_CERT', default: '', describe: 'Certificate (PEM) for HTTPS on the registry port; with REGISTRY_TLS_KEY.' },
  { name: 'REGISTRY_TLS_KEY', default: '', secret: true, describe: 'Private key (PEM) for HTTPS on the registry port.' },
  { name: 'STORAGE', default: 'fs', describe: 'Where the hosted registry keeps blobs, manifests, tags and upload sessions: fs (REGISTRY_STORAGE_DIR) or s3 (one bucket, S3_*; shared by replicas).' },
  { name: 'S3_ENDPOINT', default: '', describe: 'With STORAGE=s3: URL of an S3-compatible server (e.g. http://s3.internal:7480), addressed path-style; empty: AWS.' },
  { name: 'S3_BUCKET', default: '', describe: 'With STORAGE=s3: the bucket (must exist). Required.' },
  { name: 'S3_REGION', default: 'us-east-1', describe: 'With STORAGE=s3: the bucket\'s region.' },
  { name: 'S3_ACCESS_KEY_ID', default: '', describe: 'With STORAGE=s3: access key; with S3_SECRET_ACCESS_KEY. Empty: the AWS SDK\'s usual credential chain.' },
  { name: 'S3_SECRET_ACCESS_KEY', default: '', secret: true, describe: 'With STORAGE=s3: secret key; with S3_ACCESS_KEY_ID.' },
  { name: 'S3_PREFIX', default: '', describe: 'With STORAGE=s3: key prefix inside the bucket (e.g. crossdock/prod), so several installations can share one.' },
  { name: 'REDIS_URL', default: '', secret: true, describe: 'With STORAGE=s3: Redis that coordinates replicas (redis://[:password@]host:6379[/db], rediss:// for TLS): one upstream fetch per blob cluster-wide. Empty: each replica fetches on its own. Losing Redis costs only duplicate fetches. Refused with STORAGE=fs, where replicas share nothing to coordinate.' },
  { name: 'CLUSTER_LOCK_TTL', default: '30s', describe: 'With REDIS_URL: how long a replica that died mid-fill keeps the blob\'s fill lock before another replica takes over (renewed every third of it while the fill runs).' },
  { name: 'UPLOAD_MAX_AGE', default: '24h', describe: 'Hosted upload sessions untouched for this long are purged.' },
  { name: 'HTPASSWD_FILE', default: '', describe: 'bcrypt htpasswd file; turns on client authentication on both doors.' },
  { name: 'AUTH_ANONYMOUS_PULL', default: 'false', describe: 'With HTPASSWD_FILE, still allow pulls without credentials.' },
  { name: 'UPSTREAM_CONNECT_TO', default: '', describe: 'host:port:address:port entries (like curl --connect-to): connect there, keep the real name for SNI, Host and certificate checks.' },
  { name: 'UPSTREAM_CA_FILE', default: '', describe: 'Extra CA certificates (PEM) trusted for upstreams, on top of the system bundle.' },
  { name: 'UPSTREAM_HTTP2', default: 'false', describe: 'Offer HTTP/2 to upstreams (ALPN); those that accept it carry parallel blob downloads as streams of one connection, the others keep HTTP/1.1.' },
  { name: 'UPSTREAM_SEGMENTS', default: '1', describe: 'Connections one blob download may use at once: a blob larger than UPSTREAM_SEGMENT_MIN_SIZE that the upstream serves in ranges comes over this many range requests when its first connection is slower than UPSTREAM_SEGMENT_RATE (for links that cap each connection, e.g. 4); 1 (default) fetches every blob in one request, without Range.' },
  { name: 'UPSTREAM_SEGMENT_MIN_SIZE', default: '4m', describe: 'With UPSTREAM_SEGMENTS above 1: blobs up to this size (nginx size syntax) come in one request, which asks for this many bytes; the rest of a larger blob comes in segments.' },
  { name: 'UPSTREAM_SEGMENT_RATE', default: '12m', describe: 'With UPSTREAM_SEGMENTS above 1: bytes per second (size syntax: 12m is 12 MiB/s, about 100 Mbit/s). Once half of a blob\'s first request has arrived, a connection at least this fast gets the rest of the blob as one more range request; a slower one gets it in UPSTREAM_SEGMENTS segments. 0: always segments.' },
  { name: 'UPSTREAM_PROXY', default: '', secret: true, describe: 'Egress HTTP proxy for upstream connections and tunnels (http://[user:pass@]host:port).' },
  { name: 'WARM_IMAGES', default: '', describe: 'Upstream images to pull into the cache at start, every platform (docker.io/library/alpine:3.20 ghcr.io/org/app:1), through the same path as a client pull. Space or comma separated.' },
  { name: 'WARM_INTERVAL', default: '0', describe: 'Warm WARM_IMAGES again this often (e.g. 6h), keeping their tags fresh for outages; 0: once at start. A 429 moves the next run to when the upstream says.' },
  { name: 'LOG_LEVEL', default: 'info', describe: 'fatal, error, warn, info, debug, trace or silent.' },
  { name: 'LOG_FORMAT', default: 'auto', describe: 'json, pretty (one readable line per event) or auto: pretty when stdout is a terminal.' },
]

const DOCKER_HUB_HOSTS = ['registry-1.docker.io', 'auth.docker.io', 'index.docker.io', 'docker.io']

export interface Config {
  proxyPort: number
  registryPort: number
  listenHost: string
  /** Upstream hosts intercepted on the proxy door (Docker Hub's hosts, REGISTRIES, AUTH_REGISTRIES hosts). */
  registries: string[]
  hostedHostnames: string[]
  /** Ports CONNECT may reach: CONNECT_ALLOWED_PORTS plus explicit ports of registries and hosted names. */
  connectAllowedPorts: number[]
  authRegistries: RegistryCredential[]
  /** CREDENTIAL_HELPERS, with the helpers' timeout and how long an answer is reused. */
  credentialHelpers: { entries: CredentialHelperEntry[], timeoutMs: number, cacheMs: number }
  /** PULL_ALLOW (empty: no allow-list) and PULL_DENY. */
  pullAllow: PullPattern[]
  pullDeny: PullPattern[]
  allowPush: boolean
  verifySsl: boolean
  disableIpv6: boolean
  upstreamConnectTo: ConnectTo[]
  upstreamCaFile?: string
  upstreamProxy?: URL
  upstreamHttp2: boolean
  /** UPSTREAM_SEGMENTS (1: off), UPSTREAM_SEGMENT_MIN_SIZE (bytes), UPSTREAM_SEGMENT_RATE (bytes per second; 0: always segment). */
  segments: { perBlob: number, minSize: number, rate: number }
  /** TUNNEL_ALLOW (empty: no allow-list) and TUNNEL_DENY, for the destination policy. */
  tunnelAllow: DestinationRule[]
  tunnelDeny: DestinationRule[]
  maxTunnels: number
  caDir: string
  caCrtFile?: string
  caKeyFile?: string
  /** CA_KEY_PASSPHRASE; undefined: rpardini's `foobar` if the key is encrypted. */
  caKeyPassphrase?: string
  cacheDir: string
  registryStorageDir: string
  /** STORAGE and S3_*: the hosted registry's backend and, with s3, the pull-through cache's shared tier. */
  storage: StorageConfig
  /** REDIS_URL and CLUSTER_LOCK_TTL: coordination between replicas. */
  cluster: ClusterConfig
  registryTlsCert?: string
  registryTlsKey?: string
  htpasswdFile?: string
  authAnonymousPull: boolean
  logLevel: string
  logFormat: 'json' | 'pretty' | 'auto'
  timeouts: {
    connectMs: number
    readMs: number
    clientHeaderMs: number
    keepAliveMs: number
    shutdownMs: number
    /** PROXY_CONNECT_{CONNECT,READ,SEND}_TIMEOUT: raw tunnels. */
    tunnelConnectMs: number
    tunnelReadMs: number
    tunnelSendMs: number
  }
  cache: {
    maxSize: number
    /** LOCAL_CACHE_MAX_SIZE: the local tier's bound when the cache lives in the bucket (STORAGE=s3). */
    localMaxSize: number
    inactiveMs: number
    minFree: number
    enableManifestCache: boolean
    primaryRegex?: RegExp
    primaryTtlMs: number
    secondaryRegex?: RegExp
    secondaryTtlMs: number
    defaultTtlMs: number
  }
  /** PREFETCH_CONCURRENCY (0: off), PREFETCH_ADAPTIVE and PREFETCH_IMAGE_BUDGET (bytes). */
  prefetch: { concurrency: number, adaptive: boolean, imageBudget: number }
  uploadMaxAgeMs: number
  /** WARM_IMAGES (checked against the upstreams when the app starts) and WARM_INTERVAL (0: once). */
  warm: { images: string[], intervalMs: number }
}

type Env = Record<string, string | undefined>

/**
 * Reads and validates the whole configuration. `env` defaults to the process environment. A bad
 * value of a secret variable is reported without its secret part (the message goes to journald).
 */
export function loadConfig (env: Env = process.env, cwd = process.cwd()): Config {
  try {
    return readConfig(env, cwd)
  } catch (err) {
    const d = (err as ConfigError).detail
    if (err instanceof ConfigError && d !== undefined && VARIABLES.find(v => v.name === d.variable)?.secret === true) {
      throw new ConfigError(`${d.variable}=${JSON.stringify(redactSecret(d.variable, d.value))}: expected ${d.expected}`)
    }
    throw err
  }
}

function readConfig (env: Env, cwd: string): Config {
  const reader = envVar.from(env)
  const specs = new Map(VARIABLES.map(v => [v.name, v]))
  const raw = (name: string): string => {
    const spec = specs.get(name)
    if (spec === undefined) throw new Error(`config: unknown variable ${name}`)
    return reader.get(name).default(spec.default).asString()
  }
  const optionalPath = (name: string): string | undefined => raw(name).trim() === '' ? undefined : resolve(cwd, raw(name).trim())
  const optionalRegex = (name: string): RegExp | undefined => raw(name) === '' ? undefined : parseRegex(name, raw(name))

  const authRegistries = parseAuthRegistries('AUTH_REGISTRIES', raw('AUTH_REGISTRIES'), raw('AUTH_REGISTRIES_DELIMITER'), raw('AUTH_REGISTRY_DELIMITER'))
  const credentialHelpers = parseCredentialHelpers('CREDENTIAL_HELPERS', raw('CREDENTIAL_HELPERS'))
  const registries = unique([
    ...DOCKER_HUB_HOSTS,
    ...splitList(raw('REGISTRIES')).map(h => parseHost('REGISTRIES', h)),
    ...authRegistries.map(c => c.host),
    ...credentialHelpers.map(c => c.host),
  ])
  const hostedHostnames = unique(splitList(raw('HOSTED_HOSTNAMES')).map(h => parseHost('HOSTED_HOSTNAMES', h)))
  for (const h of hostedHostnames) {
    if (registries.includes(h)) fail('HOSTED_HOSTNAMES', h, 'a host that is not also an upstream registry (REGISTRIES, Docker Hub)')
  }

  const caCrtFile = optionalPath('CA_CRT_FILE')
  const caKeyFile = optionalPath('CA_KEY_FILE')
  if ((caCrtFile === undefined) !== (caKeyFile === undefined)) fail(caCrtFile === undefined ? 'CA_CRT_FILE' : 'CA_KEY_FILE', '', 'CA_CRT_FILE and CA_KEY_FILE to be set together')
  const registryTlsCert = optionalPath('REGISTRY_TLS_CERT')
  const registryTlsKey = optionalPath('REGISTRY_TLS_KEY')
  if ((registryTlsCert === undefined) !== (registryTlsKey === undefined)) fail(registryTlsCert === undefined ? 'REGISTRY_TLS_CERT' : 'REGISTRY_TLS_KEY', '', 'REGISTRY_TLS_CERT and REGISTRY_TLS_KEY to be set together')

  const explicitPorts = [...registries, ...hostedHostnames].map(h => /:(\d+)$/.exec(h)?.[1]).filter((p): p is string => p !== undefined).map(Number)
  const connectAllowedPorts = unique([...splitList(raw('CONNECT_ALLOWED_PORTS')).map(p => String(parsePort('CONNECT_ALLOWED_PORTS', p))), ...explicitPorts.map(String)]).map(Number)

  const upstreamProxyRaw = raw('UPSTREAM_PROXY').trim()
  const proxyPort = parsePort('PROXY_PORT', raw('PROXY_PORT'))
  const registryPort = parsePort('REGISTRY_PORT', raw('REGISTRY_PORT'))
  // Both doors on one port: the second listen fails with EADDRINUSE after the first succeeded.
  if (proxyPort === registryPort && proxyPort !== 0) fail('REGISTRY_PORT', raw('REGISTRY_PORT'), `a port other than PROXY_PORT (${proxyPort}); the two doors need a port each`)
  const passphrase = raw('CA_KEY_PASSPHRASE')
  const storage = parseStorage(raw)
  return {
    proxyPort,
    registryPort,
    listenHost: parseListenHost('LISTEN_HOST', raw('LISTEN_HOST')),
    registries,
    hostedHostnames,
    connectAllowedPorts,
    authRegistries,
    credentialHelpers: {
      entries: credentialHelpers,
      timeoutMs: parseDuration('CREDENTIAL_HELPER_TIMEOUT', raw('CREDENTIAL_HELPER_TIMEOUT')),
      cacheMs: parseDuration('CREDENTIAL_HELPER_CACHE_TIME', raw('CREDENTIAL_HELPER_CACHE_TIME')),
    },
    pullAllow: parsePullPatterns('PULL_ALLOW', raw('PULL_ALLOW')),
    pullDeny: parsePullPatterns('PULL_DENY', raw('PULL_DENY')),
    allowPush: parseBool('ALLOW_PUSH', raw('ALLOW_PUSH')),
    verifySsl: parseBool('VERIFY_SSL', raw('VERIFY_SSL')),
    disableIpv6: parseBool('DISABLE_IPV6', raw('DISABLE_IPV6')),
    upstreamConnectTo: parseConnectTo('UPSTREAM_CONNECT_TO', raw('UPSTREAM_CONNECT_TO')),
    upstreamCaFile: optionalPath('UPSTREAM_CA_FILE'),
    upstreamProxy: upstreamProxyRaw === '' ? undefined : parseUrl('UPSTREAM_PROXY', upstreamProxyRaw, ['http:']),
    upstreamHttp2: parseBool('UPSTREAM_HTTP2', raw('UPSTREAM_HTTP2')),
    segments: {
      perBlob: parseCount('UPSTREAM_SEGMENTS', raw('UPSTREAM_SEGMENTS')),
      minSize: parseSize('UPSTREAM_SEGMENT_MIN_SIZE', raw('UPSTREAM_SEGMENT_MIN_SIZE')),
      rate: parseRate('UPSTREAM_SEGMENT_RATE', raw('UPSTREAM_SEGMENT_RATE')),
    },
    tunnelAllow: parseDestinationRules('TUNNEL_ALLOW', raw('TUNNEL_ALLOW')),
    tunnelDeny: parseDestinationRules('TUNNEL_DENY', raw('TUNNEL_DENY')),
    maxTunnels: parseCount('MAX_TUNNELS', raw('MAX_TUNNELS')),
    caDir: resolve(cwd, raw('CA_DIR')),
    caCrtFile,
    caKeyFile,
    caKeyPassphrase: passphrase === '' ? undefined : passphrase,
    cacheDir: resolve(cwd, raw('CACHE_DIR')),
    registryStorageDir: resolve(cwd, raw('REGISTRY_STORAGE_DIR')),
    storage,
    cluster: parseCluster(raw, storage.kind),
    registryTlsCert,
    registryTlsKey,
    htpasswdFile: optionalPath('HTPASSWD_FILE'),
    authAnonymousPull: parseBool('AUTH_ANONYMOUS_PULL', raw('AUTH_ANONYMOUS_PULL')),
    logLevel: parseLogLevel('LOG_LEVEL', raw('LOG_LEVEL')),
    logFormat: parseChoice('LOG_FORMAT', raw('LOG_FORMAT'), ['auto', 'json', 'pretty'] as const),
    timeouts: {
      connectMs: parseDuration('PROXY_CONNECT_TIMEOUT', raw('PROXY_CONNECT_TIMEOUT')),
      readMs: parseDuration('PROXY_READ_TIMEOUT', raw('PROXY_READ_TIMEOUT')),
      clientHeaderMs: parseDuration('CLIENT_HEADER_TIMEOUT', raw('CLIENT_HEADER_TIMEOUT')),
      keepAliveMs: parseDuration('KEEPALIVE_TIMEOUT', raw('KEEPALIVE_TIMEOUT')),
      shutdownMs: parseDuration('SHUTDOWN_TIMEOUT', raw('SHUTDOWN_TIMEOUT')),
      tunnelConnectMs: parseDuration('PROXY_CONNECT_CONNECT_TIMEOUT', raw('PROXY_CONNECT_CONNECT_TIMEOUT')),
      tunnelReadMs: parseDuration('PROXY_CONNECT_READ_TIMEOUT', raw('PROXY_CONNECT_READ_TIMEOUT')),
      tunnelSendMs: parseDuration('PROXY_CONNECT_SEND_TIMEOUT', raw('PROXY_CONNECT_SEND_TIMEOUT')),
    },
    cache: {
      maxSize: parseSize('CACHE_MAX_SIZE', raw('CACHE_MAX_SIZE')),
      localMaxSize: parseSize('LOCAL_CACHE_MAX_SIZE', raw('LOCAL_CACHE_MAX_SIZE')),
      inactiveMs: parseDuration('CACHE_INACTIVE', raw('CACHE_INACTIVE')),
      minFree: parseSize('CACHE_MIN_FREE', raw('CACHE_MIN_FREE')),
      enableManifestCache: parseBool('ENABLE_MANIFEST_CACHE', raw('ENABLE_MANIFEST_CACHE')),
      primaryRegex: optionalRegex('MANIFEST_CACHE_PRIMARY_REGEX'),
      primaryTtlMs: parseDuration('MANIFEST_CACHE_PRIMARY_TIME', raw('MANIFEST_CACHE_PRIMARY_TIME')),
      secondaryRegex: optionalRegex('MANIFEST_CACHE_SECONDARY_REGEX'),
      secondaryTtlMs: parseDuration('MANIFEST_CACHE_SECONDARY_TIME', raw('MANIFEST_CACHE_SECONDARY_TIME')),
      defaultTtlMs: parseDuration('MANIFEST_CACHE_DEFAULT_TIME', raw('MANIFEST_CACHE_DEFAULT_TIME')),
    },
    prefetch: {
      concurrency: parseCount('PREFETCH_CONCURRENCY', raw('PREFETCH_CONCURRENCY'), 0),
      adaptive: parseBool('PREFETCH_ADAPTIVE', raw('PREFETCH_ADAPTIVE')),
      imageBudget: parseSize('PREFETCH_IMAGE_BUDGET', raw('PREFETCH_IMAGE_BUDGET')),
    },
    uploadMaxAgeMs: parseDuration('UPLOAD_MAX_AGE', raw('UPLOAD_MAX_AGE')),
    warm: { images: splitList(raw('WARM_IMAGES')), intervalMs: parseDuration('WARM_INTERVAL', raw('WARM_INTERVAL')) },
  }
}

/** The effective configuration as `crossdock config check` prints it: secrets replaced. */
export function describeConfig (env: Env = process.env): Array<{ name: string, value: string, source: 'env' | 'default' }> {
  return VARIABLES.map(v => {
    const set = env[v.name] !== undefined
    const value = set ? String(env[v.name]) : v.default
    const shown = v.secret === true && value !== '' ? redactSecret(v.name, value) : value
    return { name: v.name, value: shown, source: set ? 'env' : 'default' }
  })
}

function redactSecret (name: string, value: string): string {
  if (name === 'UPSTREAM_PROXY' || name === 'REDIS_URL') {
    // Up to the *last* @: a password may itself contain @ or /, and a malformed URL may lack `//`.
    const at = value.lastIndexOf('@')
    if (at < 0) return value
    const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(value)?.[0] ?? ''
    return `${scheme}[redacted]@${value.slice(at + 1)}`
  }
  if (name === 'AUTH_REGISTRIES') return `[redacted: ${value.split(/\s+/).filter(Boolean).length} entries]`
  return '[redacted]'
}

function unique (xs: string[]): string[] {
  return [...new Set(xs)]
}
