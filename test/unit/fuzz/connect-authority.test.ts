/**
 * Properties of CONNECT authority parsing (src/proxy/connect-authority.ts): whatever a client puts
 * on the request line, the proxy either refuses it (400) or gets a host the dialer and the
 * certificate minter can take (IPv4, IPv6, or a DNS name of label characters) and a port in range;
 * and formatting then parsing gives the same authority back.
 */
import t from 'tap'
import net from 'node:net'
import fc from 'fast-check'
import { parseAuthority, formatAuthority } from '../../../src/proxy/connect-authority.js'
import { FUZZ_SEED, FUZZ_RUNS, check } from './fuzz-settings.js'

t.comment(`fuzz seed ${FUZZ_SEED}, ${FUZZ_RUNS} runs per property (FUZZ_SEED=… to replay)`)

const port = fc.oneof(fc.integer({ min: 0, max: 70000 }).map(String), fc.constantFrom('', '00443', '-1', '443 ', ' 443', '4e2', '443/', '443#x', '123456', '0x1bb'))
const host = fc.oneof(
  fc.domain(),
  fc.ipV4(),
  fc.ipV4Extended(),
  fc.ipV6().map(h => `[${h}]`),
  fc.ipV6(),
  fc.constantFrom('[fe80::1%eth0]', '[::1', '::1]', '[]', '[1.2.3.4]', 'user@host', 'a..b', '.', '-a', 'a_b', 'A.B.', 'xn--bcher-kva.example', 'ex ample', 'e\u0000x', 'ex/ample', 'ex%2eample', 'bücher.de', '*.test'),
  fc.string({ maxLength: 40 }),
  fc.integer({ min: 250, max: 400 }).map(n => 'a'.repeat(n)),
)
const authority = fc.oneof(
  fc.tuple(host, fc.constantFrom(':', '::', ''), port).map(([h, s, p]) => `${h}${s}${p}`),
  fc.string({ maxLength: 60 }),
)

const LABELS = /^[a-z0-9_.-]+$/

t.test('an accepted authority is a usable host and an in-range port', async t => {
  check(t, 'parsed or refused, never odd', fc.property(authority, value => {
    const a = parseAuthority(value)
    if (a === undefined) return true
    const hostOk = net.isIPv6(a.host) ? a.host === a.host.toLowerCase() : (net.isIPv4(a.host) || (LABELS.test(a.host) && a.host.length <= 253 && !a.host.includes('..')))
    return hostOk && Number.isInteger(a.port) && a.port >= 1 && a.port <= 65535 && value.length <= 300
  }))
})

t.test('format then parse is the identity on accepted authorities', async t => {
  check(t, 'round trip', fc.property(authority, value => {
    const a = parseAuthority(value)
    return a === undefined || JSON.stringify(parseAuthority(formatAuthority(a))) === JSON.stringify(a)
  }))
})

t.test('the usual spellings are accepted', async t => {
  check(t, 'DNS names', fc.property(fc.domain(), fc.integer({ min: 1, max: 65535 }), (h, p) => {
    const a = parseAuthority(`${h}:${p}`)
    return h.length > 253 || (a?.host === h.toLowerCase() && a.port === p)
  }))
  // Any spelling of an IPv6 address comes back canonical (compressed, lower case): the same address.
  check(t, 'IPv6 literals in brackets', fc.property(fc.ipV6(), fc.integer({ min: 1, max: 65535 }), (h, p) => {
    const host = parseAuthority(`[${h}]:${p}`)?.host
    if (host === undefined || !net.isIPv6(host) || host !== host.toLowerCase()) return false
    const same = new net.BlockList()
    same.addAddress(h, 'ipv6')
    return same.check(host, 'ipv6')
  }))
  check(t, 'IPv4 addresses', fc.property(fc.ipV4(), fc.integer({ min: 1, max: 65535 }), (h, p) => parseAuthority(`${h}:${p}`)?.host === h))
  check(t, 'no port, port 0 and ports past 65535 are refused', fc.property(fc.domain(), fc.oneof(fc.constant(''), fc.constant('0'), fc.integer({ min: 65536, max: 99999 }).map(String)), (h, p) => parseAuthority(`${h}:${p}`) === undefined && parseAuthority(h) === undefined))
})

t.test('absurd lengths are refused', async t => {
  t.equal(parseAuthority(`${'a.'.repeat(150)}io:443`), undefined, 'over 300 characters')
  t.equal(parseAuthority(`${'a'.repeat(64)}.io:443`), undefined, 'a label over 63 characters')
  t.equal(parseAuthority(`[${'0:'.repeat(100_000)}1]:443`), undefined, 'a 200 kB IPv6 literal')
})
