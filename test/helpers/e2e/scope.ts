/**
 * The per-test-file frame of an end-to-end test: the netns guard, a private state directory and a
 * LIFO cleanup stack run from the file's teardown, whatever happened before.
 *
 * Test files share one network namespace and run two at a time, so each file binds its own
 * loopback address (see test/e2e/README.md for who uses which) and keeps all state under its dir.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'

export const NETNS_SKIP_REASON = 'run via npm test: end-to-end tests need the private network namespace'

/**
 * True when this process runs in the private network namespace `npm test` creates. Otherwise the
 * file's plan is set to 0 with the reason (a skip) and false is returned. Beyond the env flag, the
 * namespace must have no interface but `lo`: dockerd resolves registry names in DNS even behind a
 * proxy, and nothing may leave the machine.
 */
export function requirePrivateNetns (t: Test): boolean {
  if (process.env.CROSSDOCK_NETNS !== '1') {
    t.plan(0, NETNS_SKIP_REASON)
    return false
  }
  // /proc/self/net/dev lists this process's netns (/sys/class/net shows sysfs's, i.e. the host's).
  const interfaces = readFileSync('/proc/self/net/dev', 'utf8').split('\n').slice(2)
    .map(line => line.split(':')[0]?.trim() ?? '').filter(i => i !== '' && i !== 'lo')
  if (interfaces.length > 0) {
    t.fail(`CROSSDOCK_NETNS=1 but this network namespace has interfaces besides lo (${interfaces.join(', ')}); refusing to start daemons`)
    t.end()
    return false
  }
  return true
}

/** Mount points at or below `dir`, from this process's mount table (which dockerd shares). */
export function mountsUnder (dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .map(line => line.split(' ')[4])
    // mountinfo escapes spaces etc. as octal; our dirs have none.
    .filter((mp): mp is string => mp !== undefined && (mp === dir || mp.startsWith(dir + '/')))
}

export interface Scope {
  /** The state directory (mkdtemp); removed at teardown unless E2E_KEEP=1. */
  readonly dir: string
  path: (...parts: string[]) => string
  /** Registers a cleanup; cleanups run last-registered-first, each even if another failed. */
  defer: (what: string, fn: () => Promise<void> | void) => void
  /** Registers a log to print (tail) as a comment when the file failed. */
  attachLog: (name: string, tail: () => string) => void
}

export function createScope (t: Test, name: string): Scope {
  // Short prefix: dockerd's containerd socket lives under this dir and unix paths max out at 108 bytes.
  const dir = mkdtempSync(join(tmpdir(), `cd-e2e-${name}-`))
  const cleanups: Array<{ what: string, fn: () => Promise<void> | void }> = []
  const logs: Array<{ name: string, tail: () => string }> = []
  t.teardown(async () => {
    if (!t.passing()) {
      for (const l of logs) t.comment(`--- ${l.name} (tail) ---\n${l.tail().slice(-3000)}`)
    }
    for (const c of cleanups.reverse()) {
      try { await c.fn() } catch (err) { t.comment(`cleanup "${c.what}" failed: ${String(err)}`) }
    }
    const mounted = mountsUnder(dir)
    if (process.env.E2E_KEEP === '1') t.comment(`E2E_KEEP=1: state kept in ${dir}`)
    // Never rm -rf through a mount point that is still there (a dockerd data-root, say).
    else if (mounted.length > 0) t.fail(`mounts left under ${dir}: ${mounted.join(', ')}; not removing it`)
    else rmSync(dir, { recursive: true, force: true })
  })
  return {
    dir,
    path: (...parts) => join(dir, ...parts),
    defer: (what, fn) => { cleanups.push({ what, fn }) },
    attachLog: (logName, tail) => { logs.push({ name: logName, tail }) },
  }
}
