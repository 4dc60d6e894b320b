/**
 * Whether a target named on the proxy door is this crossdock's own registry door. A host whose
 * HTTP_PROXY points at us may still send `GET http://cache:5000/v2/…` (or `CONNECT cache:5000`)
 * when `cache` is missing from its NO_PROXY; those are served in-process by the registry door,
 * never relayed: the decision is made on addresses (the target resolves to an address we listen
 * on, at the registry port), not on names a client chooses.
 */
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { networkInterfaces } from 'node:os'

export type OwnDoorCheck = (host: string, port: number) => Promise<boolean>

export function createOwnDoorCheck (opts: { registryPort: () => number, listenHost: string }): OwnDoorCheck {
  const wildcard = opts.listenHost === '0.0.0.0' || opts.listenHost === '::'
  const ours = (): Set<string> => new Set(wildcard
    ? Object.values(networkInterfaces()).flatMap(list => (list ?? []).map(i => i.address))
    : [opts.listenHost])
  return async (host, port) => {
    if (port !== opts.registryPort()) return false
    const bare = host.replace(/^\[(.*)\]$/, '$1')
    let addresses: string[]
    try {
      addresses = isIP(bare) !== 0 ? [bare] : (await lookup(bare, { all: true })).map(a => a.address)
    } catch {
      return false
    }
    const own = ours()
    // One of its addresses is ours (localhost is 127.0.0.1 and ::1): serving it here relays nothing.
    return addresses.some(a => own.has(a.replace(/^::ffff:/, '')))
  }
}
