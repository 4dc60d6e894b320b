/**
 * PULL_ALLOW / PULL_DENY patterns: `host/repository` globs naming upstream repositories.
 *
 *   docker.io/library/*      one path segment: every official image, not library/a/b
 *   ghcr.io/my-org/**        any depth, zero segments included: my-org/app, my-org/team/app
 *   quay.io/*                quay.io's one-segment names (most of quay's have two: quay.io/**)
 *   *.gcr.io/**              `*` in the host matches within the host (never a `/`)
 *   docker.io/nginx          Docker Hub's one-segment names get `library/`, as `docker pull nginx`
 *
 * Hosts are written as clients write them and compared in one canonical form (`canonicalRegistry`):
 * lower case, no `:443`, and Docker Hub's names (docker.io, index.docker.io, registry-1.docker.io)
 * all mean `docker.io`. Parsing happens at start-up: a bad pattern is a ConfigError naming the
 * variable, the pattern and what is expected.
 */
import { fail, splitList } from './parse.js'

export interface PullPattern {
  /** As the operator wrote it: the metrics label and the reason a refusal gives. */
  text: string
  /** Matches `<canonical host>/<repository>`. */
  regex: RegExp
}

const DOCKER_HUB_NAMES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io'])

/** The one spelling of an upstream host that patterns and requests are compared in. */
export function canonicalRegistry (host: string): string {
  const h = host.toLowerCase().replace(/:443$/, '')
  return DOCKER_HUB_NAMES.has(h) ? 'docker.io' : h
}

/** `<canonical host>/<repository>` with Docker Hub's `library/` for one-segment names. */
export function canonicalRepository (host: string, repository: string): string {
  const registry = canonicalRegistry(host)
  const name = repository.toLowerCase()
  return `${registry}/${registry === 'docker.io' && !name.includes('/') ? `library/${name}` : name}`
}

// A host label or a repository segment, each possibly with `*` inside (`app-*`, `*.gcr.io`).
const HOST_GLOB = /^[a-z0-9*]([a-z0-9*-]*[a-z0-9*])?(\.[a-z0-9*]([a-z0-9*-]*[a-z0-9*])?)*(:\d{1,5})?$/
const SEGMENT_GLOB = /^[a-z0-9*][a-z0-9._*-]*$/
const EXPECTED = 'host/repository patterns such as docker.io/library/*, ghcr.io/my-org/** or quay.io/* (space or comma separated)'

export function parsePullPatterns (name: string, value: string): PullPattern[] {
  return splitList(value).map(text => {
    const lower = text.toLowerCase()
    const slash = lower.indexOf('/')
    if (slash <= 0 || slash === lower.length - 1) fail(name, text, `${EXPECTED}; a host alone is written host/**`)
    const host = lower.slice(0, slash)
    const segments = lower.slice(slash + 1).split('/')
    if (!HOST_GLOB.test(host)) fail(name, text, `${EXPECTED}; ${JSON.stringify(host)} is not a host name`)
    for (const s of segments) {
      if (s !== '**' && (!SEGMENT_GLOB.test(s) || s.includes('**'))) fail(name, text, `${EXPECTED}; ${JSON.stringify(s)} is not a repository path segment (letters, digits, . _ - and * within it, or ** alone)`)
    }
    const registry = canonicalRegistry(host)
    if (registry === 'docker.io' && segments.length === 1 && segments[0] !== '**') segments.unshift('library')
    return { text, regex: compile(registry, segments) }
  })
}

function compile (host: string, segments: string[]): RegExp {
  let source = glob(host)
  for (const s of segments) source += s === '**' ? '(?:/[^/]+)*' : `/${glob(s)}`
  return new RegExp(`^${source}$`)
}

/** `*` matches within one host or one segment; everything else is literal. */
function glob (part: string): string {
  return part.split('*').map(p => p.replace(/[.+?^${}()|[\]\\-]/g, '\\$&')).join('[^/]*')
}
