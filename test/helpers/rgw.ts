/**
 * A real Ceph RADOS Gateway (S3) for tests, from Debian's ceph-mon, ceph-osd and radosgw: one
 * monitor, one OSD on memstore (RAM, nothing on disk but a few config files) and radosgw, all on
 * one loopback address inside the test's network namespace, state in a temp dir.
 *
 *   ceph-authtool (keys) ─► monmaptool ─► ceph-mon --mkfs ─► ceph-mon -f          v2:<addr>:3300
 *                                                         ─► ceph osd new ─► ceph-osd --mkfs ─► ceph-osd -f
 *                                                         ─► radosgw-admin user create (creates the pools)
 *                                                         ─► radosgw -f (beast)   http://<addr>:7480
 *
 * Measured here (2 cores, Ceph 16.2 from bookworm): ready in ~14 s, of which ~8 s is
 * `radosgw-admin user create` waiting for the new pools' placement groups to peer; RSS after start
 * ~40 MB mon + ~50 MB OSD + ~55 MB radosgw. So one instance per test file, reused across its cases,
 * each file on its own address (test/e2e/README.md). The ports are fixed (3300, 7480) because the
 * monitor's address is part of the cluster map and beast cannot report a kernel-picked port; an
 * address owned by one file makes them free.
 *
 * Every daemon is a direct child of the test process (`startDaemon`), so `stop` ends exactly the
 * PIDs started here. `stopGateway`/`startGateway` stop and restart radosgw alone (S3 outage tests);
 * the cluster and its data stay.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { startDaemon, runOk, waitFor, type Daemon } from './e2e/daemon.js'

export interface Rgw {
  /** http://<address>:7480 */
  endpoint: string
  accessKeyId: string
  secretAccessKey: string
  region: string
  /** Milliseconds from the first command to the gateway answering S3 requests. */
  startMs: number
  pids: () => number[]
  stopGateway: () => Promise<void>
  startGateway: () => Promise<void>
  stop: () => Promise<void>
}

export const RGW_PORT = 7480
const MON_PORT = 3300
const ACCESS_KEY_ID = 'CROSSDOCKTESTKEY0001'
const SECRET_ACCESS_KEY = 'crossdock-test-secret-0001'

export interface RgwOptions {
  /** RAM the memstore OSD may fill (default 4 GiB; a benchmark pushing GiB blobs needs more). */
  memstoreBytes?: number
}

export async function startRgw (address: string, dir: string, opts: RgwOptions = {}): Promise<Rgw> {
  const started = Date.now()
  const conf = join(dir, 'ceph.conf')
  const keyring = join(dir, 'keyring')
  for (const sub of ['mon', 'osd', 'run', 'log', 'rgw']) mkdirSync(join(dir, sub), { recursive: true })
  const fsid = randomUUID()
  writeFileSync(conf, cephConf(dir, address, fsid, opts.memstoreBytes ?? 4 * 1024 ** 3))
  const ceph = (args: string[], timeoutMs = 60_000): Promise<string> => runOk(args[0], [...args.slice(1), '-c', conf], { timeoutMs })

  const keys: Array<[string, string[]]> = [
    ['mon.', ['mon', 'allow *']],
    ['client.admin', ['mon', 'allow *', 'osd', 'allow *', 'mgr', 'allow *']],
    ['osd.0', ['mon', 'allow profile osd', 'osd', 'allow *']],
    ['client.rgw', ['mon', 'allow rw', 'osd', 'allow rwx']],
  ]
  for (const [i, [name, caps]] of keys.entries()) {
    const capArgs = caps.flatMap((c, j) => j % 2 === 0 ? ['--cap', c] : [c])
    await runOk('ceph-authtool', [...(i === 0 ? ['--create-keyring'] : []), keyring, '--gen-key', '-n', name, ...capArgs])
  }
  await runOk('monmaptool', ['--create', '--addv', 'a', `[v2:${address}:${MON_PORT}]`, '--fsid', fsid, join(dir, 'monmap')])
  await ceph(['ceph-mon', '--mkfs', '-i', 'a', '--monmap', join(dir, 'monmap')])

  const daemons: Daemon[] = []
  let gateway: Daemon | undefined
  const stop = async (): Promise<void> => {
    // Gateway first, OSD before the monitor: each one's shutdown talks to the ones after it.
    for (const d of [gateway, ...daemons.slice().reverse()]) await d?.stop(10_000)
  }
  const daemon = (name: string, cmd: string, args: string[]): Daemon => {
    const d = startDaemon(name, cmd, [...args, '-c', conf, '-f'], { logFile: join(dir, 'log', `${name}.out`) })
    return d
  }
  try {
    daemons.push(daemon('ceph-mon', 'ceph-mon', ['-i', 'a']))
    const osdUuid = randomUUID()
    await ceph(['ceph', 'osd', 'new', osdUuid, '0'])
    await ceph(['ceph-osd', '-i', '0', '--mkfs', '--osd-uuid', osdUuid])
    const osd = daemon('ceph-osd', 'ceph-osd', ['-i', '0'])
    daemons.push(osd)
    await waitFor('the OSD to be up', async () => {
      const stat = JSON.parse(await ceph(['ceph', 'osd', 'stat', '-f', 'json'])) as { num_up_osds?: number }
      return stat.num_up_osds === 1
    }, { timeoutMs: 60_000, intervalMs: 200, abort: () => osd.hasExited() ? `ceph-osd exited: ${osd.logTail(500)}` : undefined })
    // Creates the realm, zone and pools on the way: the slow step (placement groups peering).
    await ceph(['radosgw-admin', 'user', 'create', '--uid=crossdock', '--display-name=crossdock',
      `--access-key=${ACCESS_KEY_ID}`, `--secret=${SECRET_ACCESS_KEY}`], 120_000)
    const startGateway = async (): Promise<void> => {
      if (gateway !== undefined && !gateway.hasExited()) return
      const gw = daemon('radosgw', 'radosgw', ['-n', 'client.rgw'])
      gateway = gw
      await waitFor('radosgw to answer', async () => (await fetch(`http://${address}:${RGW_PORT}/`)).status === 200,
        { timeoutMs: 60_000, intervalMs: 100, abort: () => gw.hasExited() ? `radosgw exited: ${gw.logTail(500)}` : undefined })
    }
    await startGateway()
    return {
      endpoint: `http://${address}:${RGW_PORT}`,
      accessKeyId: ACCESS_KEY_ID,
      secretAccessKey: SECRET_ACCESS_KEY,
      region: 'us-east-1',
      startMs: Date.now() - started,
      pids: () => [...daemons, gateway].filter((d): d is Daemon => d !== undefined && !d.hasExited()).map(d => d.pid),
      stopGateway: async () => { await gateway?.stop(10_000) },
      startGateway,
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}

function cephConf (dir: string, address: string, fsid: string, memstoreBytes: number): string {
  return `[global]
fsid = ${fsid}
mon_host = v2:${address}:${MON_PORT}
public_addr = ${address}
ms_bind_msgr1 = false
keyring = ${join(dir, 'keyring')}
run_dir = ${join(dir, 'run')}
admin_socket = ${join(dir, 'run')}/$name.asok
log_file = ${join(dir, 'log')}/$name.log
pid_file = ${join(dir, 'run')}/$name.pid
mon_data = ${join(dir, 'mon')}
osd_data = ${join(dir, 'osd')}
# RAM only: a test cluster has nothing worth keeping, and memstore needs no block device.
osd_objectstore = memstore
memstore_device_bytes = ${memstoreBytes}
osd_memory_target = 939524096
# One OSD: every pool has one copy and few placement groups (the default 32 each would pass
# mon_max_pg_per_osd once radosgw has made its seven pools).
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false

[client.rgw]
rgw_frontends = beast endpoint=${address}:${RGW_PORT}
rgw_data = ${join(dir, 'rgw')}
`
}
