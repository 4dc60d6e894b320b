/**
 * A fake `docker-credential-<name>` for tests: a shell script in a temp directory put on PATH. What
 * it does next is steered by files beside it: `answer.json` (printed), `fail` (its text on stderr,
 * exit 1), `notfound` (docker-credential-helpers' "not found" answer), `hang` (never answers). Each
 * call appends the server URL it read on stdin to `calls`.
 */
import { mkdtemp, writeFile, readFile, rm, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface FakeHelper {
  dir: string
  /** The server URLs it was called with, in order. */
  calls: () => Promise<string[]>
  answer: (username: string, secret: string) => Promise<void>
  fail: (stderr: string) => Promise<void>
  hang: () => Promise<void>
  notFound: () => Promise<void>
  /** Back to answering `answer.json`. */
  heal: () => Promise<void>
  remove: () => Promise<void>
}

const SCRIPT = `#!/bin/sh
d=$(dirname "$0")
read -r server
echo "$server" >> "$d/calls"
if [ -f "$d/hang" ]; then exec sleep 600; fi
if [ -f "$d/fail" ]; then cat "$d/fail" >&2; exit 1; fi
if [ -f "$d/notfound" ]; then echo "credentials not found in native keychain"; exit 1; fi
cat "$d/answer.json"
`

export async function createFakeHelper (name: string): Promise<FakeHelper> {
  const dir = await mkdtemp(join(tmpdir(), 'cd-helper-'))
  const program = join(dir, `docker-credential-${name}`)
  await writeFile(program, SCRIPT)
  await chmod(program, 0o755)
  const clear = async (): Promise<void> => { for (const f of ['fail', 'hang', 'notfound']) await rm(join(dir, f), { force: true }) }
  return {
    dir,
    calls: async () => (await readFile(join(dir, 'calls'), 'utf8').catch(() => '')).split('\n').filter(l => l !== ''),
    answer: async (username, secret) => { await writeFile(join(dir, 'answer.json'), JSON.stringify({ ServerURL: 'x', Username: username, Secret: secret })) },
    fail: async stderr => { await clear(); await writeFile(join(dir, 'fail'), stderr) },
    hang: async () => { await clear(); await writeFile(join(dir, 'hang'), '') },
    notFound: async () => { await clear(); await writeFile(join(dir, 'notfound'), '') },
    heal: clear,
    remove: async () => { await rm(dir, { recursive: true, force: true }) },
  }
}
