/**
 * Upstream credentials from Docker credential helpers (CREDENTIAL_HELPERS), the protocol of
 * docker/docker-credential-helpers that docker/cli and containerd's tools speak:
 *
 *   spawn docker-credential-<helper> get      (argv, found on PATH; no shell ever sees the host)
 *     stdin  ◄─ the server URL: the configured host; for Docker Hub `https://index.docker.io/v1/`,
 *               the key `docker login` stores Hub credentials under
 *     stdout ─► {"ServerURL": …, "Username": …, "Secret": …}, exit 0
 *               Username `<token>`: Secret is an identity token (an OAuth2 refresh token, sent to
 *               the token realm as grant_type=refresh_token, as docker/cli and containerd do)
 *     exit ≠ 0 with stdout `credentials not found in native keychain` ─► no credentials (anonymous)
 *     exit ≠ 0 otherwise, no answer within CREDENTIAL_HELPER_TIMEOUT (SIGKILL), not on PATH, or not
 *               the JSON above ─► ProxyError 502 ERR_CREDENTIAL_HELPER; the log gets the first line
 *               of stderr (never stdout: on success it holds the secret)
 *
 * An answer is reused for CREDENTIAL_HELPER_CACHE_TIME (short-lived tokens: ECR's 12 h, GAR's 1 h);
 * `invalidate` drops it when the upstream refused it (a 401), so the next use asks the helper again.
 * One helper run per host at a time (concurrent misses share it).
 */
import { spawn } from 'node:child_process'
import type { Logger } from '../log.js'
import { ProxyError } from '../errors.js'
import { SingleFlight } from '../util/single-flight.js'
import type { CredentialHelperEntry } from '../config/index.js'
import { DOCKER_HUB_SERVER_URL, isDockerHub } from '../oci/docker-hub.js'

/** What a helper answered, in AUTH_REGISTRIES' shape. */
export interface HelperCredential {
  host: string
  username: string
  password: string
  /** Username was `<token>`: `password` is an identity (refresh) token, not a password. */
  identityToken: boolean
  /** Which helper answered (for logs). */
  helper: string
}

export interface CredentialHelpersOptions {
  entries: readonly CredentialHelperEntry[]
  timeoutMs: number
  cacheMs: number
  log: Logger
  now?: () => number
}

const NOT_FOUND = 'credentials not found in native keychain'
const MAX_OUTPUT = 64 * 1024

interface Cached { credential: HelperCredential | undefined, until: number }

export class CredentialHelpers {
  private readonly byHost = new Map<string, CredentialHelperEntry>()
  private readonly answers = new Map<string, Cached>()
  private readonly runs = new SingleFlight<HelperCredential | undefined>()
  private readonly log: Logger
  private readonly now: () => number
  /** Helper processes started (tests and the status of a refresh). */
  runsStarted = 0

  constructor (private readonly opts: CredentialHelpersOptions) {
    for (const e of opts.entries) this.byHost.set(e.host, e)
    this.log = opts.log.child({ module: 'credential-helper' })
    this.now = opts.now ?? Date.now
  }

  get size (): number {
    return this.byHost.size
  }

  /** The configured entry for one of `hosts` (a registry and the other names of its family), if any. */
  entryFor (hosts: readonly string[]): CredentialHelperEntry | undefined {
    for (const h of hosts) {
      const e = this.byHost.get(h)
      if (e !== undefined) return e
    }
    return undefined
  }

  /** The helper's answer for `entry`, from the cache or a fresh run. Rejects with a 502 ProxyError. */
  async get (entry: CredentialHelperEntry): Promise<HelperCredential | undefined> {
    const cached = this.answers.get(entry.host)
    if (cached !== undefined && cached.until > this.now()) return cached.credential
    return await this.runs.run(entry.host, async () => {
      const credential = await this.run(entry)
      this.answers.set(entry.host, { credential, until: this.now() + this.opts.cacheMs })
      return credential
    })
  }

  /**
   * Whether the helper's latest answer for `entry` was a credential (expired or not). False before
   * its first run and after "not found": then crossdock pulls anonymously, and nothing it cached
   * was fetched with the operator's account.
   */
  answered (entry: CredentialHelperEntry): boolean {
    return this.answers.get(entry.host)?.credential !== undefined
  }

  /** Forgets the answer for `entry` (the upstream refused it): the next `get` runs the helper. */
  invalidate (entry: CredentialHelperEntry): void {
    const cached = this.answers.get(entry.host)
    if (cached !== undefined) cached.until = 0
  }

  private async run (entry: CredentialHelperEntry): Promise<HelperCredential | undefined> {
    const program = `docker-credential-${entry.helper}`
    const serverUrl = isDockerHub(entry.host) ? DOCKER_HUB_SERVER_URL : entry.host
    const failed = (why: string, stderr?: string): ProxyError => {
      this.log.warn({ host: entry.host, helper: program, reason: why, stderr: firstLine(stderr) }, 'credential helper failed')
      return new ProxyError(502, 'ERR_CREDENTIAL_HELPER', `credential helper ${program} for ${entry.host} failed: ${why}`)
    }
    this.runsStarted++
    const { code, stdout, stderr, error, timedOut } = await runProcess(program, serverUrl, this.opts.timeoutMs)
    if (timedOut) throw failed(`no answer within ${this.opts.timeoutMs} ms (killed)`, stderr)
    if (error !== undefined) throw failed(error.code === 'ENOENT' ? 'not found on PATH' : error.message)
    if (code !== 0) {
      if (stdout.trim() === NOT_FOUND) {
        this.log.info({ host: entry.host, helper: program }, 'credential helper has no credentials for this host: anonymous')
        return undefined
      }
      throw failed(`exit code ${String(code)}`, stderr)
    }
    let json: Record<string, unknown>
    try {
      json = JSON.parse(stdout) as Record<string, unknown>
    } catch {
      throw failed('its answer is not JSON')
    }
    const username = typeof json.Username === 'string' ? json.Username : ''
    const secret = typeof json.Secret === 'string' ? json.Secret : ''
    if (secret === '') throw failed('its answer has no Secret')
    this.log.debug({ host: entry.host, helper: program, identityToken: username === '<token>' }, 'credential helper answered')
    return { host: entry.host, username, password: secret, identityToken: username === '<token>', helper: program }
  }
}

interface ProcessResult {
  code: number | null
  stdout: string
  stderr: string
  error?: NodeJS.ErrnoException
  timedOut: boolean
}

/** `program get` with `input` on stdin; killed (SIGKILL) after `timeoutMs`. Never rejects. */
async function runProcess (program: string, input: string, timeoutMs: number): Promise<ProcessResult> {
  return await new Promise(resolve => {
    const out: Buffer[] = []
    const err: Buffer[] = []
    let outBytes = 0
    let errBytes = 0
    let timedOut = false
    let error: NodeJS.ErrnoException | undefined
    // argv, not a shell: the host is data on stdin, never part of a command line.
    const child = spawn(program, ['get'], { stdio: ['pipe', 'pipe', 'pipe'] })
    // A grandchild the helper left behind may hold its pipes open: they are closed with the kill,
    // or 'close' would wait for that process too.
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); child.stdout.destroy(); child.stderr.destroy() }, timeoutMs)
    child.stdout.on('data', (c: Buffer) => { if ((outBytes += c.length) <= MAX_OUTPUT) out.push(c) })
    child.stderr.on('data', (c: Buffer) => { if ((errBytes += c.length) <= MAX_OUTPUT) err.push(c) })
    child.on('error', e => { error = e })
    // A helper that exits without reading stdin makes the write fail with EPIPE: its exit code tells.
    child.stdin.on('error', () => {})
    child.stdin.end(`${input}\n`)
    child.on('close', code => {
      clearTimeout(timer)
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), error, timedOut })
    })
  })
}

/** The first line of a helper's stderr, bounded (a log field, not a dump). */
function firstLine (text: string | undefined): string | undefined {
  const line = text?.split('\n').find(l => l.trim() !== '')?.trim()
  return line === undefined ? undefined : line.slice(0, 200)
}
