/**
 * Shared settings of the property tests: one fixed seed (printed, so a failure reproduces with
 * FUZZ_SEED=<seed>) and a bounded number of runs, so the fuzz suite takes seconds, not minutes.
 * fast-check shrinks a failing case to a minimal counterexample and prints it with the seed.
 */
import fc from 'fast-check'

interface Assertions { pass: (msg: string) => void, fail: (msg: string) => void }

export const FUZZ_SEED = Number(process.env.FUZZ_SEED ?? 1010)
export const FUZZ_RUNS = Number(process.env.FUZZ_RUNS ?? 400)

/**
 * Runs `property` with the shared seed and run count; one tap assertion named `what`. A failure
 * reports fast-check's shrunk counterexample, the seed and the path to replay it.
 */
export function check (t: Assertions, what: string, property: fc.IProperty<any>, runs = FUZZ_RUNS): void {
  const r = fc.check(property, { seed: FUZZ_SEED, numRuns: runs })
  if (r.failed) t.fail(`${what}: ${fc.defaultReportMessage(r) ?? 'failed'}`)
  else t.pass(`${what} (${r.numRuns} cases)`)
}

/**
 * Pieces an attacker strings together to escape a directory: parent references, separators of
 * every spelling (percent-encoded, double-encoded, backslash, overlong UTF-8), NUL, absolute roots.
 */
export const TRAVERSAL_PIECES = [
  '..', '.', '/', '//', '\\', '%2e', '%2E', '%2f', '%2F', '%252e%252f', '%5c', '%c0%af', '%00', '\0',
  '/etc/passwd', 'etc', 'a', 'b0', '_layers', '_manifests', 'blobs', 'sha256', ':', '~', ' ', '\n', 'C:',
]

/** Strings made of traversal pieces and arbitrary text: most are hostile, a few happen to be valid. */
export const hostile = fc.oneof(
  fc.array(fc.constantFrom(...TRAVERSAL_PIECES), { minLength: 1, maxLength: 12 }).map(xs => xs.join('')),
  fc.string({ maxLength: 80 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
)

const lower = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789'.split(''))
const alnum = fc.string({ unit: lower, minLength: 1, maxLength: 8 })
/** One repository-name component per the spec grammar: alnum runs joined by `.`, `_`, `__` or dashes. */
export const component = fc.tuple(alnum, fc.array(fc.tuple(fc.constantFrom('.', '_', '__', '-', '--'), alnum), { maxLength: 3 }))
  .map(([first, rest]) => first + rest.map(([sep, run]) => sep + run).join(''))
/** Valid repository names of any depth (may exceed 255 characters: callers check the limit). */
export const validName = fc.array(component, { minLength: 1, maxLength: 6 }).map(cs => cs.join('/'))

const hexChar = fc.constantFrom(...'0123456789abcdef'.split(''))
export const validDigest = fc.oneof(
  fc.string({ unit: hexChar, minLength: 64, maxLength: 64 }).map(h => `sha256:${h}`),
  fc.string({ unit: hexChar, minLength: 128, maxLength: 128 }).map(h => `sha512:${h}`),
)
/** Digest-shaped strings that are mostly wrong: bad algorithms, lengths, cases, separators. */
export const digestLike = fc.oneof(
  validDigest,
  fc.tuple(fc.constantFrom('sha256', 'sha512', 'SHA256', 'md5', 'sha256+b64', 'sha384', '', '..'), fc.constantFrom(':', '::', '/', ''),
    fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF./=_-%'.split('')), maxLength: 140 }))
    .map(([a, s, h]) => a + s + h),
  hostile,
)
export const validTag = fc.tuple(fc.constantFrom(...'abcXYZ019_'.split('')), fc.string({ unit: fc.constantFrom(...'aZ9._-'.split('')), maxLength: 127 }))
  .map(([a, b]) => a + b)
