/**
 * PULL_ALLOW / PULL_DENY patterns: `host/repository` globs naming upstream repositories, checked
 * for syntax here (a bad one stops the start, naming the variable and the pattern); what they match
 * is mirror/pull-policy.ts's business.
 *
 *   docker.io/library/*      `*` matches within one path segment
 *   ghcr.io/my-org/**        `**` alone is any number of segments, zero included
 *   *.gcr.io/**              `*` in the host matches within the host (never a `/`)
 */
import { fail, splitList } from './parse.js'

export interface PullPattern {
  /** As the operator wrote it: the metrics label and the reason a refusal gives. */
  text: string
  /** The host glob, lower case. */
  host: string
  /** The repository's segment globs, lower case (`**` for any depth). */
  segments: string[]
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
    return { text, host, segments }
  })
}
