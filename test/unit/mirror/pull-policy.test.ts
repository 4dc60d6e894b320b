// PULL_ALLOW / PULL_DENY: the pattern grammar, Docker Hub's names, precedence, and start-up errors.
import t from 'tap'
import { parsePullPatterns } from '../../../src/config/pull-patterns.js'
import { PullPolicy, canonicalRepository, NOT_ALLOWED_RULE } from '../../../src/mirror/pull-policy.js'
import { repositoryOfRead } from '../../../src/oci/api-path.js'
import { loadConfig } from '../../../src/config/index.js'
import { ConfigError } from '../../../src/errors.js'

const policy = (allow: string, deny: string, denied: Array<{ host: string, rule: string }> = []): PullPolicy =>
  new PullPolicy({ allow: parsePullPatterns('PULL_ALLOW', allow), deny: parsePullPatterns('PULL_DENY', deny), onDenied: r => denied.push(r) })

t.test('* is one segment, ** any depth (zero included), * inside a segment or host', async t => {
  const p = policy('docker.io/library/* ghcr.io/my-org/** quay.io/* *.gcr.io/** ghcr.io/team/app-*', '')
  const ok = (host: string, repo: string): boolean => p.decide(host, repo).allowed
  t.ok(ok('registry-1.docker.io', 'library/alpine'))
  t.notOk(ok('registry-1.docker.io', 'library/a/b'), '* does not cross a /')
  t.notOk(ok('registry-1.docker.io', 'someone/alpine'))
  t.ok(ok('ghcr.io', 'my-org/app'))
  t.ok(ok('ghcr.io', 'my-org/team/deep/app'))
  t.notOk(ok('ghcr.io', 'my-org-evil/app'), 'a prefix is whole segments')
  t.ok(ok('quay.io', 'one'))
  t.notOk(ok('quay.io', 'org/two'))
  t.ok(ok('eu.gcr.io', 'p/img'))
  t.notOk(ok('gcr.io', 'p/img'), '*.gcr.io needs a label before .gcr.io')
  t.ok(ok('ghcr.io', 'team/app-web'))
  t.notOk(ok('ghcr.io', 'team/web'))
})

t.test('Docker Hub: every spelling of the host, library/ for one-segment names, case', async t => {
  for (const host of ['docker.io', 'index.docker.io', 'registry-1.docker.io', 'Registry-1.Docker.IO:443']) {
    t.equal(canonicalRepository(host, 'alpine'), 'docker.io/library/alpine', host)
  }
  const p = policy('', 'docker.io/nginx index.docker.io/bitnami/*')
  t.notOk(p.decide('registry-1.docker.io', 'library/nginx').allowed, 'docker.io/nginx means library/nginx')
  t.notOk(p.decide('registry-1.docker.io', 'nginx').allowed, 'a short name in a request is library/ too')
  t.notOk(p.decide('docker.io', 'bitnami/redis').allowed, 'index.docker.io in a pattern is Docker Hub')
  t.ok(p.decide('registry-1.docker.io', 'library/redis').allowed)
  t.ok(p.decide('quay.io', 'nginx').allowed, 'library/ is Docker Hub only')
  const all = policy('docker.io/*', '')
  t.ok(all.decide('registry-1.docker.io', 'library/busybox').allowed, 'docker.io/* = the official images')
  t.notOk(all.decide('registry-1.docker.io', 'user/app').allowed)
})

t.test('deny wins; an allow-list refuses the rest; each refusal names its rule and is counted', async t => {
  const denied: Array<{ host: string, rule: string }> = []
  const p = policy('ghcr.io/my-org/**', 'ghcr.io/my-org/secret', denied)
  t.same(p.decide('ghcr.io', 'my-org/app'), { allowed: true })
  const d1 = p.decide('ghcr.io', 'my-org/secret')
  t.match(d1, { allowed: false, rule: 'ghcr.io/my-org/secret', reason: /ghcr\.io\/my-org\/secret is refused by the PULL_DENY rule ghcr\.io\/my-org\/secret/ })
  const d2 = p.decide('quay.io', 'x/y')
  t.match(d2, { allowed: false, rule: NOT_ALLOWED_RULE, reason: /quay\.io\/x\/y is refused: it matches no PULL_ALLOW rule \(ghcr\.io\/my-org\/\*\*\)/ })
  t.same(denied, [{ host: 'ghcr.io', rule: 'ghcr.io/my-org/secret' }, { host: 'quay.io', rule: 'PULL_ALLOW' }])
  t.notMatch(JSON.stringify(d1), /\n/, 'one line')
  t.ok(policy('', '').open, 'no lists: open, nothing checked')
  t.ok(policy('', '').decide('ghcr.io', 'anything').allowed)
})

t.test('which requests are reads of a repository', async t => {
  t.equal(repositoryOfRead('/v2/library/alpine/manifests/3.20'), 'library/alpine')
  t.equal(repositoryOfRead('/v2/a/b/c/blobs/sha256:abc'), 'a/b/c')
  t.equal(repositoryOfRead('/v2/org/app/tags/list?n=10'), 'org/app')
  t.equal(repositoryOfRead('/v2/org/app/referrers/sha256:abc'), 'org/app')
  t.equal(repositoryOfRead('/v2/'), undefined)
  t.equal(repositoryOfRead('/v2/org/app/blobs/uploads/'), undefined, 'uploads are pushes, not reads')
  t.equal(repositoryOfRead('/token?scope=repository:x:pull'), undefined)
})

t.test('a bad pattern stops the start, naming the variable, the pattern and what is expected', async t => {
  const bad = ['quay.io', 'docker.io/', '/library/x', 'ghcr.io/org/a**b', 'ghcr.io/Org Name', 'ghcr.io/org//x', 'bad_host!/x']
  for (const v of bad) {
    const err = (() => { try { loadConfig({ PULL_DENY: v }); return undefined } catch (e) { return e } })()
    t.ok(err instanceof ConfigError, `${v} refused`)
    t.match((err as Error).message, /^PULL_DENY="/, 'names the variable')
    t.match((err as Error).message, /expected host\/repository patterns such as docker\.io\/library\/\*/)
  }
  t.throws(() => loadConfig({ PULL_ALLOW: 'quay.io' }), /PULL_ALLOW="quay\.io": .*a host alone is written host\/\*\*/)
  const c = loadConfig({ PULL_ALLOW: 'docker.io/library/*, ghcr.io/my-org/**', PULL_DENY: '' })
  t.same(c.pullAllow.map(p => p.text), ['docker.io/library/*', 'ghcr.io/my-org/**'], 'comma or space separated')
  t.same(c.pullDeny, [], 'default: nothing denied')
})
