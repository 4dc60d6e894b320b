/**
 * Parses `WWW-Authenticate` (RFC 9110 §11.6.1) as registries send it:
 *
 *   Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"
 *   Basic realm="Registry Realm"
 *
 * One header may carry several challenges separated by commas, and a comma also separates the
 * parameters of one challenge, so the parser walks tokens: a bare word followed by a space (not by
 * `=`) starts a new challenge. Quoted values may contain commas, spaces and `\"` escapes (scopes of
 * several repositories are space-separated inside one quoted value).
 */

export interface AuthChallenge {
  /** Lower-cased scheme: `bearer`, `basic`, … */
  scheme: string
  /** Parameters with lower-cased names (`realm`, `service`, `scope`, `error`). */
  params: Record<string, string>
}

/** Every challenge in the header(s); an empty list for an absent or unparseable header. */
export function parseChallenges (header: string | string[] | undefined): AuthChallenge[] {
  if (header === undefined) return []
  const out: AuthChallenge[] = []
  for (const h of Array.isArray(header) ? header : [header]) out.push(...parseOne(h))
  return out
}

/** The first Bearer challenge with a realm, else the first Basic challenge. */
export function pickChallenge (header: string | string[] | undefined): AuthChallenge | undefined {
  const all = parseChallenges(header)
  return all.find(c => c.scheme === 'bearer' && c.params.realm !== undefined) ?? all.find(c => c.scheme === 'basic')
}

const TOKEN = /[!#$%&'*+\-.^_`|~0-9A-Za-z]+/y
const SPACE = /[ \t]*/y

function parseOne (s: string): AuthChallenge[] {
  const out: AuthChallenge[] = []
  let i = 0
  let current: AuthChallenge | undefined
  const skip = (): void => { SPACE.lastIndex = i; SPACE.exec(s); i = SPACE.lastIndex }
  const token = (): string | undefined => {
    TOKEN.lastIndex = i
    const m = TOKEN.exec(s)
    if (m === null) return undefined
    i = TOKEN.lastIndex
    return m[0]
  }
  while (i < s.length) {
    skip()
    if (s[i] === ',') { i++; continue }
    const word = token()
    if (word === undefined) break // garbage: keep what was parsed so far
    skip()
    if (s[i] === '=' && current !== undefined) {
      i++
      skip()
      current.params[word.toLowerCase()] = s[i] === '"' ? quoted() : (token() ?? '')
      continue
    }
    // A word not followed by `=` is a scheme; token68 credentials after it are ignored.
    current = { scheme: word.toLowerCase(), params: {} }
    out.push(current)
  }
  return out

  function quoted (): string {
    let v = ''
    i++ // opening quote
    while (i < s.length && s[i] !== '"') {
      if (s[i] === '\\' && i + 1 < s.length) i++
      v += s[i]
      i++
    }
    i++ // closing quote
    return v
  }
}
