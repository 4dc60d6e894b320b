// The container image without a docker engine: the Dockerfile's build steps run for real in a temp
// copy (scripts/check-image-steps.sh: npm ci, build, prune dev deps, then the CLI and the service's
// module graph must load from production dependencies only), the Dockerfile says what the design
// asks, and its HEALTHCHECK command really tells a live crossdock from a dead one.
import t from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { REPO } from './built-cli.js'
import { startApp } from '../../helpers/start-app.js'

const dockerfile = readFileSync(join(REPO, 'Dockerfile'), 'utf8')
// Continuation lines joined, comments dropped: one instruction per line.
const instructions = dockerfile.replace(/\\\n\s*/g, ' ').split('\n').filter(l => l.trim() !== '' && !l.startsWith('#'))
const script = readFileSync(join(REPO, 'scripts/check-image-steps.sh'), 'utf8')

async function run (cmd: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null, out: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (c: Buffer) => { out += c.toString() })
    child.stderr.on('data', (c: Buffer) => { out += c.toString() })
    child.once('error', reject)
    child.once('close', code => resolve({ code, out }))
  })
}

t.test('the Dockerfile: multi-stage slim, non-root, ports, volumes, directories, health check', async t => {
  t.ok(instructions.includes('ARG BASE_IMAGE=node:20-bookworm-slim'), 'BASE_IMAGE build argument, node:20-bookworm-slim by default')
  t.equal(instructions.filter(l => l.startsWith('FROM ${BASE_IMAGE}')).length, 2, 'build and runtime stages on BASE_IMAGE')
  t.ok(instructions.some(l => l.startsWith('RUN ') && l.includes('ln -s /app/dist/cli.js /usr/local/bin/crossdock')), 'crossdock on PATH')
  t.ok(instructions.some(l => l.startsWith('RUN ') && l.includes('chmod 755 dist/cli.js')), 'and executable (its #!/usr/bin/env node line)')
  t.match(readFileSync(join(REPO, 'src/cli.ts'), 'utf8'), /^#!\/usr\/bin\/env node\n/)
  const user = instructions.filter(l => l.startsWith('USER ')).pop()
  t.ok(user !== undefined && !/\b(root|0)\b/.test(user), `runs as ${user}`)
  t.ok(instructions.includes('EXPOSE 3128 5000'))
  t.ok(instructions.includes('VOLUME ["/ca", "/docker_mirror_cache", "/registry_data"]'))
  const env = instructions.find(l => l.startsWith('ENV ')) ?? ''
  for (const kv of ['CA_DIR=/ca', 'CACHE_DIR=/docker_mirror_cache', 'REGISTRY_STORAGE_DIR=/registry_data', 'PROXY_PORT=3128', 'REGISTRY_PORT=5000']) t.match(env, kv)
  t.match(instructions.find(l => l.startsWith('HEALTHCHECK')) ?? '', /\/healthz/)
  t.notMatch(instructions.join('\n'), /\bcurl\b|apt-get install/, 'no curl added to the slim image')
})

t.test('the script runs the Dockerfile\'s build steps', async t => {
  for (const step of ['npm ci', 'npm run build', 'npm prune --omit=dev']) {
    t.ok(instructions.some(l => l.startsWith('RUN ') && l.includes(step)), `Dockerfile: ${step}`)
    t.match(script, new RegExp(`^${step}`, 'm'), `script: ${step}`)
  }
  const copied = instructions.filter(l => l.startsWith('COPY ') && !l.includes('--from')).flatMap(l => l.split(/\s+/).slice(1, -1))
  t.same(copied.sort(), ['package-lock.json', 'package.json', 'src', 'tsconfig.json'], 'the build stage copies manifests, tsconfig, sources')
  const ignore = readFileSync(join(REPO, '.dockerignore'), 'utf8')
  for (const f of copied) t.match(ignore, new RegExp(`^!${f.replace('.', '\\.')}/?$`, 'm'), `.dockerignore lets ${f} in`)
})

t.test('npm ci, build, prune --omit=dev in a temp copy; the production tree runs', async t => {
  // From the npm cache only: tests send nothing off this machine. `npm ci` filled it.
  const r = await run('bash', ['scripts/check-image-steps.sh'], { npm_config_offline: 'true' })
  if (r.code !== 0 && /ENOTCACHED/.test(r.out)) {
    t.plan(0, `the npm cache lacks packages of package-lock.json (run \`npm ci\` once with network): ${r.out.split('\n').find(l => l.includes('ENOTCACHED')) ?? ''}`)
    return
  }
  t.equal(r.code, 0, r.code === 0 ? 'the script passed' : r.out.slice(-3000))
  t.match(r.out, /check-image-steps: ok/)
})

t.test('the HEALTHCHECK command passes against a live crossdock and fails when nothing answers', async t => {
  const cmd = JSON.parse(/HEALTHCHECK .*CMD (\[.*\])$/.exec(instructions.find(l => l.startsWith('HEALTHCHECK')) ?? '')?.[1] ?? 'null') as string[]
  t.equal(cmd[0], 'node')
  // LISTEN_HOST other than loopback's 127.0.0.1: the check must follow it.
  const app = await startApp({ CACHE_MIN_FREE: '0', LISTEN_HOST: '127.0.0.2' })
  const live = await run(process.execPath, cmd.slice(1), { PROXY_PORT: String(app.proxyPort), LISTEN_HOST: '127.0.0.2' })
  const elsewhere = await run(process.execPath, cmd.slice(1), { PROXY_PORT: String(app.proxyPort), LISTEN_HOST: '127.0.0.3' })
  await app.stop()
  t.equal(live.code, 0, live.out)
  t.equal(elsewhere.code, 1, 'it asks LISTEN_HOST, not a fixed address')
  const dead = await run(process.execPath, cmd.slice(1), { PROXY_PORT: String(app.proxyPort), LISTEN_HOST: '127.0.0.2' })
  t.equal(dead.code, 1, 'nothing listens there any more')
  const wild = await startApp({ CACHE_MIN_FREE: '0', LISTEN_HOST: '0.0.0.0' })
  const viaLoopback = await run(process.execPath, cmd.slice(1), { PROXY_PORT: String(wild.proxyPort), LISTEN_HOST: '0.0.0.0' })
  await wild.stop()
  t.equal(viaLoopback.code, 0, `LISTEN_HOST=0.0.0.0: asked on loopback ${viaLoopback.out}`)
})
