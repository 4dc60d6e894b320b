// Foundation benchmark (printed, not asserted):
//  1. a 1 GiB GET through the MITM proxy vs direct to the same TLS upstream: MB/s, ratio, proxy CPU s/GiB;
//  2. peak proxy RSS while a client reads a 1 GiB body at ~50 MB/s (target < 200 MB).
// The path is not a blob path, so the cache is not involved: this measures the forwarding path.
// Run: npm run build && npx tsx bench/proxy-throughput.ts [sizeMiB]
import { startByteServer, startCrossdock, fetchCounting, TEST_CA, GiB, MiB, fmt } from './lib.js'

const size = Number(process.argv[2] ?? 1024) * MiB
const upstream = await startByteServer(size)
const cd = await startCrossdock({ UPSTREAM_CONNECT_TO: `registry-1.docker.io:443:127.0.0.1:${upstream.port}` })
try {
  const direct = await fetchCounting({ host: 'registry-1.docker.io', path: '/bench/raw', ca: TEST_CA, port: upstream.port })
  const cpu0 = cd.cpuSeconds()
  const proxied = await fetchCounting({ host: 'registry-1.docker.io', path: '/bench/raw', ca: cd.caPem, proxyPort: cd.proxyPort })
  const cpu = cd.cpuSeconds() - cpu0
  const mbps = (r: { bytes: number, seconds: number }): number => r.bytes / MiB / r.seconds
  console.log(`## proxy throughput (${size / MiB} MiB, one run)`)
  console.log(`direct:  ${fmt(mbps(direct))} MB/s (${direct.bytes} bytes)`)
  console.log(`proxied: ${fmt(mbps(proxied))} MB/s (${proxied.bytes} bytes)`)
  console.log(`ratio proxied/direct: ${fmt(mbps(proxied) / mbps(direct), 2)}`)
  console.log(`proxy CPU: ${fmt(cpu, 2)} s, ${fmt(cpu / (proxied.bytes / GiB), 2)} s/GiB`)

  const rssBefore = cd.rssMiB()
  const slow = await fetchCounting({ host: 'registry-1.docker.io', path: '/bench/raw', ca: cd.caPem, proxyPort: cd.proxyPort, rateBytesPerSec: 50 * MiB })
  console.log(`## slow client (~50 MB/s)`)
  console.log(`read ${slow.bytes} bytes at ${fmt(mbps(slow))} MB/s; proxy RSS before ${fmt(cd.rssMiB() > 0 ? rssBefore : 0)} MiB, peak (VmHWM, whole run) ${fmt(cd.peakRssMiB())} MiB (target < 200)`)
} finally {
  await cd.stop()
  upstream.close()
}
