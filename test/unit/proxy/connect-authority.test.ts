import t from 'tap'
import { parseAuthority, formatAuthority } from '../../../src/proxy/connect-authority.js'
import { Dialer } from '../../../src/upstream/dialer.js'
import { stripHopByHop } from '../../../src/upstream/headers.js'

t.test('CONNECT authorities', async t => {
  t.same(parseAuthority('registry-1.docker.io:443'), { host: 'registry-1.docker.io', port: 443 })
  t.same(parseAuthority('GHCR.IO:443'), { host: 'ghcr.io', port: 443 })
  t.same(parseAuthority('[::1]:8443'), { host: '::1', port: 8443 })
  t.same(parseAuthority('127.0.0.1:5000'), { host: '127.0.0.1', port: 5000 })
  for (const bad of ['ghcr.io', 'ghcr.io:', ':443', 'ghcr.io:0', 'ghcr.io:99999', '[nothex]:443', 'a b:443', `${'a'.repeat(300)}:443`, 'ghcr.io:443/x', '::1:443', undefined]) {
    t.equal(parseAuthority(bad), undefined, String(bad))
  }
  t.equal(formatAuthority({ host: '::1', port: 443 }), '[::1]:443')
})

t.test('UPSTREAM_CONNECT_TO resolution', async t => {
  const d = new Dialer({
    connectTo: [{ host: 'registry-1.docker.io', port: 443, address: '127.0.0.12', toPort: 5443 }, { host: '', port: 0, address: '127.0.0.99', toPort: 1 }],
    disableIpv6: false,
    connectTimeoutMs: 1000,
  })
  t.same(d.resolve('REGISTRY-1.docker.io', 443), { host: '127.0.0.12', port: 5443 })
  t.same(d.resolve('registry-1.docker.io', 80), { host: '127.0.0.99', port: 1 }, 'an empty host and port match anything')
  const none = new Dialer({ connectTo: [], disableIpv6: false, connectTimeoutMs: 1000 })
  t.same(none.resolve('ghcr.io', 443), { host: 'ghcr.io', port: 443 })
})

t.test('hop-by-hop headers are dropped, end-to-end ones kept', async t => {
  t.same(stripHopByHop({ connection: 'keep-alive, x-private', 'keep-alive': 'timeout=5', 'x-private': '1', 'proxy-authorization': 'Basic x', 'transfer-encoding': 'chunked', accept: 'a', authorization: 'Bearer t' }),
    { accept: 'a', authorization: 'Bearer t' })
})
