/**
 * This process's name among the replicas: `<hostname>-<pid>`, chosen once at start. It ends fencing
 * tokens (so a fill directory in the bucket says which replica wrote it) and names this replica's
 * read-time batches (cache-keys.ts atimes/<replica>/), so it must be a key segment:
 * [A-Za-z0-9._-], at most 128 characters. Readable on purpose (a pod name, a host), and unique
 * among live processes: two replicas on one host differ by pid, two pods by hostname. A restarted
 * pod may get the same id again; nothing relies on ids never repeating (tokens carry a counter,
 * batch names a time).
 */
import { hostname } from 'node:os'

const HOST_MAX = 100

export function createReplicaId (host = hostname(), pid = process.pid): string {
  const safe = host.replace(/[^A-Za-z0-9.-]+/g, '-').replace(/^[-.]+|[-.]+$/g, '').slice(0, HOST_MAX)
  return `${safe === '' ? 'replica' : safe}-${pid}`
}
