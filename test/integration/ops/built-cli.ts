/**
 * The built CLI (`dist/cli.js`) for tests that run it as operators do. `npm test` builds first; run
 * alone (`npx tap test/integration/ops`), a missing or stale dist/ is rebuilt once, under a lock so
 * two test files never write dist/ at the same time.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO = resolve(fileURLToPath(new URL('../../..', import.meta.url)))
export const CLI = join(REPO, 'dist/cli.js')

function newestSource (dir: string): number {
  let newest = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    newest = Math.max(newest, e.isDirectory() ? newestSource(p) : statSync(p).mtimeMs)
  }
  return newest
}

function isStale (): boolean {
  try { return statSync(CLI).mtimeMs < newestSource(join(REPO, 'src')) } catch { return true }
}

/** Makes sure dist/ is built from the current sources. */
export async function ensureBuilt (): Promise<void> {
  if (!isStale()) return
  const lock = join(REPO, 'dist.build-lock')
  for (;;) {
    try { mkdirSync(lock); break } catch {}
    // A lock left by a killed run: older than any build takes.
    try { if (Date.now() - statSync(lock).mtimeMs > 120_000) rmdirSync(lock) } catch {}
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  try {
    if (!isStale()) return
    const r = spawnSync(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', join(REPO, 'tsconfig.json')], { encoding: 'utf8' })
    // tsc emits even with type errors elsewhere in the tree; only a missing CLI is fatal here.
    if (isStale()) throw new Error(`building dist/ failed: ${r.stdout}${r.stderr}`)
  } finally {
    rmdirSync(lock)
  }
}

export interface CliResult { code: number | null, stdout: string, stderr: string, /** Killed after `timeoutMs`. */ timedOut?: boolean }

/**
 * Runs `node dist/cli.js ...args` with exactly `env` (plus PATH), stdin closed. `timeoutMs`: kill
 * it then (a command that should have exited but listens or hangs); `uid`/`gid`: run as that user.
 */
export async function runCli (args: string[], env: Record<string, string>, opts: { timeoutMs?: number, uid?: number, gid?: number } = {}): Promise<CliResult> {
  return await new Promise((resolve, reject) => {
    // Through setpriv rather than spawn's uid: tap's processinfo hooks node children and would write
    // its own files (as that user) into the checkout.
    const [cmd, argv] = opts.uid === undefined
      ? [process.execPath, [CLI, ...args]]
      : ['setpriv', [`--reuid=${opts.uid}`, `--regid=${opts.gid ?? opts.uid}`, '--clear-groups', 'env', '-u', 'NODE_OPTIONS', process.execPath, CLI, ...args]]
    const child = spawn(cmd, argv, { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let timedOut = false
    const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, opts.timeoutMs)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
    child.once('error', reject)
    child.once('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr, timedOut }) })
  })
}
