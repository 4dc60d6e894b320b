/**
 * Properties of `Range` (blob GET) and `Content-Range` (upload PATCH/PUT) parsing
 * (src/oci/range.ts, shared by both doors): whatever the header, the result is the whole blob, a
 * range inside it, or unsatisfiable (416); Content-Range: a range or the spec's error — never a range past the end, a negative or unsafe offset, or another exception.
 */
import t from 'tap'
import fc from 'fast-check'
import { OciError } from '../../../src/errors.js'
import { parseRange, parseContentRange } from '../../../src/oci/range.js'
import { FUZZ_SEED, FUZZ_RUNS, check } from './fuzz-settings.js'

t.comment(`fuzz seed ${FUZZ_SEED}, ${FUZZ_RUNS} runs per property (FUZZ_SEED=… to replay)`)

// Numbers as clients (and attackers) write them: small, near the blob size, unsafe, huge, padded.
const num = fc.oneof(
  fc.nat(2000).map(String),
  fc.constantFrom('', '0', '00', '-0', '+1', '1e3', '0x10', ' 1', '9007199254740991', '9007199254740993', '9'.repeat(400)),
)
const rangeHeader = fc.oneof(
  fc.tuple(num, num).map(([a, b]) => `bytes=${a}-${b}`),
  fc.tuple(fc.constantFrom('bytes=', 'Bytes=', 'items=', 'bytes ', ' bytes='), num, fc.constantFrom('-', '--', ',', ''), num, fc.constantFrom('', ',0-1', ', 5-', '/100', ' ', '\t'))
    .map(([u, a, s, b, tail]) => `${u}${a}${s}${b}${tail}`),
  fc.string({ maxLength: 40 }),
)
const size = fc.oneof(fc.nat(1500), fc.constantFrom(0, 1, Number.MAX_SAFE_INTEGER))

t.test('Range: any header gives the whole blob, a range within it, or 416, and never throws', async t => {
  check(t, 'range within the blob or 416', fc.property(rangeHeader, size, (header, blobSize) => {
    const r = parseRange(header, blobSize)
    if (r === undefined || r === 'unsatisfiable') return true
    return Number.isSafeInteger(r.start) && Number.isSafeInteger(r.end) && r.start >= 0 && r.start <= r.end && r.end <= blobSize - 1
  }))
})

t.test('Range: well-formed single ranges mean what RFC 9110 says', async t => {
  check(t, 'first-last and first- ranges', fc.property(fc.nat(3000), fc.option(fc.nat(3000), { nil: undefined }), fc.nat(2000), (first, last, blobSize) => {
    const header = `bytes=${first}-${last ?? ''}`
    const r = parseRange(header, blobSize)
    // RFC 9110 §14.1.1: last < first is an invalid range (ignored: 200); §14.1.2: first ≥ size is unsatisfiable (416).
    if (last !== undefined && last < first) return r === undefined
    if (first >= blobSize) return r === 'unsatisfiable'
    return r !== undefined && r !== 'unsatisfiable' && r.start === first && r.end === Math.min(last ?? blobSize - 1, blobSize - 1)
  }))
  check(t, 'suffix ranges', fc.property(fc.integer({ min: 1, max: 3000 }), fc.integer({ min: 1, max: 2000 }), (n, blobSize) => {
    const r = parseRange(`bytes=-${n}`, blobSize)
    return r !== undefined && r !== 'unsatisfiable' && r.start === Math.max(0, blobSize - n) && r.end === blobSize - 1
  }))
})

const contentRange = fc.oneof(
  fc.tuple(num, num).map(([a, b]) => `${a}-${b}`),
  fc.tuple(fc.constantFrom('bytes ', 'bytes=', '', 'BYTES '), num, fc.constantFrom('-', '/', '--'), num, fc.constantFrom('', '/*', '/100', '/-1', '/x'))
    .map(([u, a, s, b, tail]) => `${u}${a}${s}${b}${tail}`),
  fc.string({ maxLength: 40 }),
)

t.test('Content-Range: a safe inclusive range, or BLOB_UPLOAD_INVALID', async t => {
  check(t, 'upload ranges', fc.property(contentRange, header => {
    let r
    try { r = parseContentRange(header) } catch (err) { return err instanceof OciError && err.code === 'BLOB_UPLOAD_INVALID' && err.status === 400 }
    return Number.isSafeInteger(r.start) && Number.isSafeInteger(r.end) && r.start >= 0 && r.start <= r.end
  }))
  check(t, 'spec form start-end', fc.property(fc.nat(1e9), fc.nat(1e9), (a, b) => {
    const lo = Math.min(a, b)
    const hi = Math.max(a, b)
    const r = parseContentRange(`${lo}-${hi}`)
    return r.start === lo && r.end === hi
  }))
})
