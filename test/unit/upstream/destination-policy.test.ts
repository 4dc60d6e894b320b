// The destination policy (src/upstream/destination-policy.ts): address spellings read as the OS
// reads them, the default refusals, TUNNEL_ALLOW / TUNNEL_DENY globs and CIDRs, operator intent,
// crossdock's own sockets; and the Dialer judging the very addresses it connects to.
import t from 'tap'
import net from 'node:net'
import { DestinationPolicy, DestinationRefused, canonicalHost, unmapIpv4, type RefusalReport, type DestinationPolicyOptions } from '../../../src/upstream/destination-policy.js'
import { Dialer, type Resolver } from '../../../src/upstream/dialer.js'
import { parseDestinationRules } from '../../../src/config/parse.js'
import { ConfigError } from '../../../src/errors.js'

/** The reason `fn` was refused for, or 'allowed'. */
function verdict (fn: () => unknown): string {
  try {
    fn()
    return 'allowed'
  } catch (err) {
    if (err instanceof DestinationRefused) return err.reason
    throw err
  }
}

function policy (opts: Omit<DestinationPolicyOptions, 'allow' | 'deny'> & { allow?: string, deny?: string } = {}): { p: DestinationPolicy, reports: RefusalReport[] } {
  const reports: RefusalReport[] = []
  const p = new DestinationPolicy({ ...opts, allow: parseDestinationRules('TUNNEL_ALLOW', opts.allow ?? ''), deny: parseDestinationRules('TUNNEL_DENY', opts.deny ?? ''), onRefused: r => reports.push(r) })
  return { p, reports }
}

t.test('every spelling of an address is read as the OS and URL parsers read it', async t => {
  const cases: Array<[string, string | undefined]> = [
    ['0x7f000001', '127.0.0.1'], ['127.000.000.001', '127.0.0.1'], ['2130706433', '127.0.0.1'], ['127.1', '127.0.0.1'],
    ['0177.0.0.1', '127.0.0.1'], ['0x7f.1', '127.0.0.1'], ['127.0.0.1.', '127.0.0.1'], ['0', '0.0.0.0'], ['0251.0376.0251.0376', '169.254.169.254'],
    ['[::ffff:127.0.0.1]', '::ffff:7f00:1'], ['::FFFF:7F00:1', '::ffff:7f00:1'], ['0:0:0:0:0:ffff:7f00:1', '::ffff:7f00:1'], ['[::1]', '::1'],
    ['Registry-1.Docker.IO.', 'registry-1.docker.io'], ['1.2.3.4.5', undefined], ['256.0.0.1', undefined], ['a/b', undefined], ['u@h', undefined], ['h:1', undefined], ['', undefined],
  ]
  for (const [spelled, want] of cases) t.equal(canonicalHost(spelled), want, spelled)
  t.equal(unmapIpv4('::ffff:7f00:1'), '127.0.0.1')
  t.equal(unmapIpv4('::ffff:169.254.169.254'), '169.254.169.254')
  t.equal(unmapIpv4('2001:db8::1'), '2001:db8::1')
})

t.test('default refusals: loopback, link-local, unspecified, multicast, in every spelling; private ranges allowed', async t => {
  const { p, reports } = policy()
  const cases: Array<[string, string]> = [
    ['127.0.0.1', 'loopback'], ['0x7f000001', 'loopback'], ['127.000.000.001', 'loopback'], ['2130706433', 'loopback'], ['127.1', 'loopback'],
    ['127.255.255.254', 'loopback'], ['::1', 'loopback'], ['::ffff:127.0.0.1', 'loopback'], ['0:0:0:0:0:ffff:7f00:1', 'loopback'],
    ['169.254.169.254', 'link-local'], ['::ffff:169.254.169.254', 'link-local'], ['fe80::1', 'link-local'], ['febf::1', 'link-local'],
    ['0.0.0.0', 'unspecified'], ['0', 'unspecified'], ['::', 'unspecified'], ['224.0.0.1', 'multicast'], ['239.1.2.3', 'multicast'],
    ['255.255.255.255', 'multicast'], ['ff02::1', 'multicast'],
    ['10.0.0.1', 'allowed'], ['172.16.0.1', 'allowed'], ['192.168.1.1', 'allowed'], ['fd00::1', 'allowed'], ['8.8.8.8', 'allowed'],
    ['2001:db8::1', 'allowed'], ['::ffff:10.0.0.1', 'allowed'], ['fec0::1', 'allowed'],
  ]
  for (const [host, want] of cases) {
    for (const purpose of ['tunnel', 'upstream'] as const) t.equal(verdict(() => p.checkName(host, 443, purpose)), want, `${host} (${purpose})`)
  }
  t.equal(reports.length, cases.filter(c => c[1] !== 'allowed').length * 2, 'each refusal reported once')
  t.same(reports[0], { reason: 'loopback', destination: '127.0.0.1:443', purpose: 'tunnel' })
  const err = (() => { try { p.checkName('0x7f000001', 443, 'tunnel') } catch (e) { return e as DestinationRefused } })()
  t.equal(err?.status, 403)
  t.equal(err?.code, 'ERR_DESTINATION_REFUSED')
  t.match(err?.message, /^crossdock refuses to connect to 127\.0\.0\.1:443: a loopback address/)
})

t.test('names are judged on the addresses they resolve to', async t => {
  const { p } = policy()
  const name = p.checkName('internal.test', 443, 'tunnel')
  t.equal(name.host, 'internal.test', 'a name passes checkName: its addresses decide')
  t.equal(verdict(() => p.checkAddress(name, '127.0.0.5')), 'loopback')
  t.equal(verdict(() => p.checkAddress(name, '::ffff:169.254.169.254')), 'link-local')
  t.equal(verdict(() => p.checkAddress(name, '10.1.2.3')), 'allowed')
  t.equal(verdict(() => p.checkName('bad host', 443, 'tunnel')), 'invalid')
})

t.test('REGISTRIES hosts and UPSTREAM_CONNECT_TO mappings are operator intent', async t => {
  const { p } = policy({ trustedHosts: ['registry-1.docker.io', 'registry.internal:5000'] })
  const hub = p.checkName('registry-1.docker.io', 443, 'upstream')
  t.equal(verdict(() => p.checkAddress(hub, '127.0.0.1')), 'allowed', 'a registry may live on loopback')
  t.equal(verdict(() => p.checkAddress(p.checkName('registry.internal', 5000, 'upstream'), '127.0.0.1')), 'allowed', 'host:port entry')
  t.equal(verdict(() => p.checkAddress(p.checkName('registry.internal', 5001, 'upstream'), '127.0.0.1')), 'loopback', 'another port of it is not the registry')
  t.equal(verdict(() => p.checkAddress(p.checkName('registry-1.docker.io', 443, 'tunnel'), '127.0.0.1')), 'loopback', 'a tunnel is never exempt by REGISTRIES')
  t.equal(verdict(() => p.checkAddress(p.checkName('anything.test', 443, 'tunnel', true), '127.0.0.1')), 'allowed', 'a mapped destination')
})

t.test('TUNNEL_DENY adds to the defaults, for every purpose', async t => {
  const { p } = policy({ deny: '*.corp.example 10.0.0.0/8 fd00::/8' })
  t.equal(verdict(() => p.checkName('git.corp.example', 443, 'upstream')), 'denied')
  t.equal(verdict(() => p.checkName('corp.example', 443, 'tunnel')), 'allowed', '*.x does not match x itself')
  t.equal(verdict(() => p.checkName('10.9.8.7', 443, 'tunnel')), 'denied')
  t.equal(verdict(() => p.checkName('0x0a000001', 443, 'tunnel')), 'denied', 'numeric spelling of 10.0.0.1')
  t.equal(verdict(() => p.checkName('::ffff:10.0.0.1', 443, 'upstream')), 'denied', 'IPv4-mapped')
  t.equal(verdict(() => p.checkAddress(p.checkName('cdn.test', 443, 'upstream'), 'fd00::5')), 'denied')
  t.equal(verdict(() => p.checkName('192.168.0.1', 443, 'tunnel')), 'allowed')
})

t.test('TUNNEL_ALLOW: only what it names is tunnelled; a CIDR in it opens a default refusal, a glob does not', async t => {
  const { p } = policy({ allow: '*.docker.com *.docker.io 127.0.0.0/8' })
  t.equal(verdict(() => p.checkAddress(p.checkName('production.cloudflare.docker.com', 443, 'tunnel'), '104.16.0.1')), 'allowed')
  t.equal(verdict(() => p.checkAddress(p.checkName('example.com', 443, 'tunnel'), '93.184.216.34')), 'not-allowed')
  t.equal(verdict(() => p.checkName('8.8.8.8', 443, 'tunnel')), 'not-allowed')
  t.equal(verdict(() => p.checkName('127.0.0.9', 443, 'tunnel')), 'allowed', 'explicit CIDR')
  t.equal(verdict(() => p.checkAddress(p.checkName('evil.docker.io', 443, 'tunnel'), '169.254.169.254')), 'link-local', 'a glob never opens a refused address (DNS pointing inside)')
  t.equal(verdict(() => p.checkAddress(p.checkName('cdn.example.net', 443, 'upstream'), '93.184.216.34')), 'allowed', 'redirect hops are not tunnels')
  t.equal(verdict(() => p.checkUnresolved(p.checkName('example.com', 443, 'tunnel'))), 'not-allowed', 'through UPSTREAM_PROXY: the name alone')
  t.equal(verdict(() => p.checkUnresolved(p.checkName('registry-1.docker.io', 443, 'tunnel'))), 'allowed')
})

t.test("crossdock's own sockets are refused, even inside an allowed CIDR", async t => {
  const own = [{ address: '0.0.0.0', port: 3128 }, { address: '127.0.0.1', port: 5000 }]
  const { p } = policy({ allow: '127.0.0.0/8 10.0.0.0/8', ownSockets: () => own })
  t.equal(verdict(() => p.checkName('127.0.0.1', 3128, 'tunnel')), 'own-address')
  t.equal(verdict(() => p.checkName('127.0.0.1', 5000, 'tunnel')), 'own-address')
  t.equal(verdict(() => p.checkName('::ffff:127.0.0.1', 5000, 'tunnel')), 'own-address')
  t.equal(verdict(() => p.checkName('127.0.0.1', 443, 'tunnel')), 'allowed')
  t.equal(verdict(() => p.checkName('127.0.0.2', 5000, 'tunnel')), 'allowed', 'listening on one address only')
  t.equal(verdict(() => p.checkName('10.0.0.1', 3128, 'tunnel')), 'allowed', 'not a local address')
})

t.test('TUNNEL_ALLOW / TUNNEL_DENY syntax', async t => {
  t.same(parseDestinationRules('X', '*.docker.io, 10.0.0.0/8 fd00::/8 [::1] 192.168.1.1 registry.internal'), [
    { kind: 'glob', glob: '*.docker.io' },
    { kind: 'cidr', address: '10.0.0.0', prefix: 8, family: 'ipv4' },
    { kind: 'cidr', address: 'fd00::', prefix: 8, family: 'ipv6' },
    { kind: 'cidr', address: '::1', prefix: 128, family: 'ipv6' },
    { kind: 'cidr', address: '192.168.1.1', prefix: 32, family: 'ipv4' },
    { kind: 'glob', glob: 'registry.internal' },
  ])
  for (const bad of ['10.0.0.0/33', 'fd00::/129', '10.0.0.0/x', 'a b/c', 'http://x', 'host:443', '.x', 'a..b']) {
    t.throws(() => parseDestinationRules('TUNNEL_ALLOW', bad), ConfigError, bad)
  }
})

t.test('the Dialer resolves once and connects to exactly the addresses it judged', async t => {
  let accepted = 0
  const server = net.createServer(s => { accepted++; s.destroy() })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const port = (server.address() as net.AddressInfo).port
  const lookups: string[] = []
  // A rebinding resolver: whatever it answered first, it answers loopback afterwards.
  let answers: string[][] = []
  const resolver: Resolver = async host => { lookups.push(host); const a = answers.shift() ?? ['127.0.0.1']; return a.map(address => ({ address, family: net.isIPv6(address) ? 6 : 4 })) }
  const dial = async (p: DestinationPolicy, host: string): Promise<string> => {
    const d = new Dialer({ connectTo: [], disableIpv6: false, connectTimeoutMs: 2000, policy: p, resolver })
    try {
      const s = await d.dial(host, port, { purpose: 'tunnel' })
      s.destroy()
      return 'connected'
    } catch (err) {
      return err instanceof DestinationRefused ? err.reason : (err as NodeJS.ErrnoException).code ?? String(err)
    }
  }
  answers = [['127.0.0.1']]
  t.equal(await dial(policy().p, 'rebind.test'), 'loopback', 'a name resolving to loopback is refused')
  t.equal(accepted, 0, 'nothing was dialled')
  answers = [['10.255.255.1', '127.0.0.1']]
  t.equal(await dial(policy().p, 'mixed.test'), 'loopback', 'one refused address refuses the name')
  t.equal(accepted, 0)
  lookups.length = 0
  answers = [['127.0.0.1']]
  t.equal(await dial(policy({ allow: '127.0.0.0/8' }).p, 'allowed.test'), 'connected', 'allowed by CIDR: connects')
  t.same(lookups, ['allowed.test'], 'one resolution, and the connection went to the address it gave')
  t.equal(accepted, 1)
  t.equal(await dial(policy().p, 'localhost'), 'loopback', 'the system resolver: localhost is refused')
  t.equal(await dial(policy().p, '0x7f000001'), 'loopback', 'a numeric spelling never reaches the resolver as a name')
  t.equal(accepted, 1, 'nothing else was dialled')
})
