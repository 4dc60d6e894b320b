import t from 'tap'
import { loadConfig, describeConfig } from '../../../src/config/index.js'
import { parseSize, parseDuration, parseConnectTo, parseAuthRegistries } from '../../../src/config/parse.js'
import { ConfigError } from '../../../src/errors.js'

t.test('defaults match the design and rpardini', async t => {
  const c = loadConfig({}, '/srv')
  t.equal(c.proxyPort, 3128)
  t.equal(c.registryPort, 5000)
  t.equal(c.listenHost, '0.0.0.0')
  t.equal(c.caDir, '/srv/ca', 'relative directories resolve against the working directory')
  t.equal(c.cacheDir, '/srv/docker_mirror_cache')
  t.equal(c.registryStorageDir, '/srv/registry_data')
  t.same(c.registries, ['registry-1.docker.io', 'auth.docker.io', 'index.docker.io', 'docker.io', 'registry.k8s.io', 'gcr.io', 'quay.io', 'ghcr.io'])
  t.equal(c.allowPush, false)
  t.equal(c.verifySsl, true)
  t.equal(c.cache.maxSize, 32 * 1024 ** 3)
  t.equal(c.cache.inactiveMs, 60 * 86_400_000)
  t.equal(c.cache.enableManifestCache, false)
  t.equal(c.cache.primaryTtlMs, 600_000)
  t.equal(c.cache.defaultTtlMs, 3_600_000)
  t.ok(c.cache.primaryRegex?.test('stable'))
  t.ok(c.cache.secondaryRegex?.test('1.2.3'))
  t.notOk(c.cache.secondaryRegex?.test('latest'))
  t.same(c.authRegistries, [])
  t.same(c.connectAllowedPorts, [443])
  t.same([c.timeouts.tunnelConnectMs, c.timeouts.tunnelReadMs, c.timeouts.tunnelSendMs], [60_000, 60_000, 60_000], "rpardini's PROXY_CONNECT_*_TIMEOUT defaults")
  t.equal(c.maxTunnels, 1024)
  t.same([c.tunnelAllow, c.tunnelDeny], [[], []], 'no allow-list, no extra denials')
  t.same(loadConfig({ REGISTRIES: 'registry.internal:5000', HOSTED_HOSTNAMES: 'push.internal:8443', CONNECT_ALLOWED_PORTS: '443,8080' }).connectAllowedPorts, [443, 8080, 5000, 8443],
    'explicit registry ports are allowed')
})

t.test('sizes and durations use nginx syntax', async t => {
  t.equal(parseSize('X', '1024'), 1024)
  t.equal(parseSize('X', '512k'), 512 * 1024)
  t.equal(parseSize('X', '100M'), 100 * 1024 ** 2)
  t.equal(parseSize('X', '32g'), 32 * 1024 ** 3)
  t.equal(parseDuration('X', '60'), 60_000)
  t.equal(parseDuration('X', '60s'), 60_000)
  t.equal(parseDuration('X', '1h30m'), 5_400_000)
  t.equal(parseDuration('X', '60d'), 60 * 86_400_000)
  t.equal(parseDuration('X', '250ms'), 250)
  t.throws(() => parseDuration('X', '1x'), ConfigError)
  t.throws(() => parseSize('X', 'lots'), ConfigError)
})

t.test('a bad value names the variable, the value and what is expected', async t => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ PROXY_PORT: 'abc' }, /^PROXY_PORT="abc": expected a TCP port number/],
    [{ PROXY_PORT: '70000' }, /^PROXY_PORT="70000": expected/],
    [{ CACHE_MAX_SIZE: 'big' }, /^CACHE_MAX_SIZE="big": expected a size such as/],
    [{ LOCAL_CACHE_MAX_SIZE: '4 gigs' }, /^LOCAL_CACHE_MAX_SIZE="4 gigs": expected a size such as/],
    [{ CACHE_INACTIVE: '3 weeks' }, /^CACHE_INACTIVE="3 weeks": expected a duration/],
    [{ ALLOW_PUSH: 'maybe' }, /^ALLOW_PUSH="maybe": expected true or false/],
    [{ REGISTRIES: 'ghcr.io bad_host!' }, /^REGISTRIES="bad_host!": expected host names/],
    [{ UPSTREAM_CONNECT_TO: 'registry-1.docker.io:443:127.0.0.1' }, /^UPSTREAM_CONNECT_TO="registry-1.docker.io:443:127.0.0.1": expected entries host:port:address:port/],
    [{ UPSTREAM_PROXY: 'socks5://x:1080' }, /^UPSTREAM_PROXY="socks5:\/\/x:1080": expected a URL with scheme http:/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL="loud": expected one of/],
    [{ PROXY_CONNECT_READ_TIMEOUT: 'forever' }, /^PROXY_CONNECT_READ_TIMEOUT="forever": expected a duration/],
    [{ MAX_TUNNELS: '0' }, /^MAX_TUNNELS="0": expected a whole number of at least 1/],
    [{ UPSTREAM_SEGMENTS: '0' }, /^UPSTREAM_SEGMENTS="0": expected a whole number of at least 1/],
    [{ UPSTREAM_SEGMENT_MIN_SIZE: 'huge' }, /^UPSTREAM_SEGMENT_MIN_SIZE="huge": expected a size such as/],
    [{ TUNNEL_ALLOW: '10.0.0.0/40' }, /^TUNNEL_ALLOW="10.0.0.0\/40": expected a CIDR prefix from 0 to 32/],
    [{ TUNNEL_DENY: 'http://x' }, /^TUNNEL_DENY="http:\/\/x": expected host globs/],
    // Secret variables: what is expected, never the secret.
    [{ UPSTREAM_PROXY: 'http://me:s3cret@proxy:99999' }, /^UPSTREAM_PROXY="http:\/\/\[redacted\]@proxy:99999": expected a URL/],
    [{ UPSTREAM_PROXY: 'me:s3cret@proxy:3128' }, /^UPSTREAM_PROXY="\[redacted\]@proxy:3128": expected a URL with scheme http:/],
    [{ MANIFEST_CACHE_PRIMARY_REGEX: '(unclosed' }, /^MANIFEST_CACHE_PRIMARY_REGEX="\(unclosed": expected a regular expression/],
    [{ CA_CRT_FILE: '/x/ca.crt' }, /CA_KEY_FILE.*CA_CRT_FILE and CA_KEY_FILE to be set together/],
    [{ HOSTED_HOSTNAMES: 'ghcr.io' }, /^HOSTED_HOSTNAMES="ghcr.io": expected a host that is not also an upstream/],
    [{ AUTH_REGISTRIES: 'ghcr.io:u:p ghcr.io:v:q' }, /two entries for ghcr.io/],
    [{ AUTH_REGISTRIES: 'ghcr.io-no-fields' }, /^AUTH_REGISTRIES="\[redacted: 1 entries\]": expected entry 1 as host:user:password/],
  ]
  for (const [env, re] of cases) {
    t.throws(() => loadConfig(env), { name: 'ConfigError', message: re }, JSON.stringify(env))
  }
})

t.test('UPSTREAM_CONNECT_TO entries, comma or space separated', async t => {
  t.same(parseConnectTo('X', 'registry-1.docker.io:443:127.0.0.12:5443, ghcr.io:443:127.0.0.12:5443 ::[::1]:8443'), [
    { host: 'registry-1.docker.io', port: 443, address: '127.0.0.12', toPort: 5443 },
    { host: 'ghcr.io', port: 443, address: '127.0.0.12', toPort: 5443 },
    { host: '', port: 0, address: '::1', toPort: 8443 },
  ])
})

t.test('AUTH_REGISTRIES with rpardini delimiters, GCR JSON keys included', async t => {
  t.same(parseAuthRegistries('A', 'auth.docker.io:user:pa:ss ghcr.io:u:tok', ' ', ':'), [
    { host: 'auth.docker.io', username: 'user', password: 'pa:ss' },
    { host: 'ghcr.io', username: 'u', password: 'tok' },
  ])
  const json = '{"type": "service_account", "private_key": "-----BEGIN KEY-----\\nabc\\n", "x": "a:b c"}'
  const c = loadConfig({ AUTH_REGISTRIES: `gcr.io:::_json_key:::${json};;;quay.io:::robot:::pw`, AUTH_REGISTRIES_DELIMITER: ';;;', AUTH_REGISTRY_DELIMITER: ':::' })
  t.same(c.authRegistries, [{ host: 'gcr.io', username: '_json_key', password: json }, { host: 'quay.io', username: 'robot', password: 'pw' }])
  t.ok(c.registries.includes('gcr.io') && c.registries.includes('quay.io'), 'credential hosts are intercepted')
})

t.test('config check output redacts secrets', async t => {
  const lines = describeConfig({ AUTH_REGISTRIES: 'ghcr.io:u:s3cret', UPSTREAM_PROXY: 'http://me:pw@proxy:3128', CA_KEY_FILE: '/k' })
  const text = JSON.stringify(lines)
  t.notMatch(text, /s3cret/)
  t.notMatch(text, /me:pw/)
  t.match(text, /http:\/\/\[redacted\]@proxy:3128/)
  t.equal(lines.find(l => l.name === 'PROXY_PORT')?.source, 'default')
  t.equal(lines.find(l => l.name === 'AUTH_REGISTRIES')?.source, 'env')
})

t.test('segmented downloads: UPSTREAM_SEGMENTS, UPSTREAM_SEGMENT_MIN_SIZE and UPSTREAM_SEGMENT_RATE', async t => {
  t.same(loadConfig({}).segments, { perBlob: 1, minSize: 4 * 1024 * 1024, rate: 12 * 1024 * 1024 }, 'default: off (bench/results/2026-12-03-segments.md), 4 MiB first requests and 12 MiB/s when on')
  t.same(loadConfig({ UPSTREAM_SEGMENTS: '4', UPSTREAM_SEGMENT_MIN_SIZE: '16m', UPSTREAM_SEGMENT_RATE: '0' }).segments, { perBlob: 4, minSize: 16 * 1024 * 1024, rate: 0 })
  t.throws(() => loadConfig({ UPSTREAM_SEGMENT_RATE: '100mbit' }), /^UPSTREAM_SEGMENT_RATE="100mbit": expected bytes per second written as a size, such as 12m/, 'a rate names the variable, the value and the syntax')
})
