import t from 'tap'
import { parseRange, parseContentRange, uploadRangeHeader } from '../../../src/oci/range.js'

t.test('Range on blob GET', async t => {
  t.equal(parseRange(undefined, 10), undefined)
  t.same(parseRange('bytes=0-0', 10), { start: 0, end: 0 })
  t.same(parseRange('bytes=2-5', 10), { start: 2, end: 5 })
  t.same(parseRange('bytes=2-', 10), { start: 2, end: 9 })
  t.same(parseRange('bytes=-3', 10), { start: 7, end: 9 })
  t.same(parseRange('bytes=-30', 10), { start: 0, end: 9 })
  t.same(parseRange('bytes=8-100', 10), { start: 8, end: 9 })
  t.equal(parseRange('bytes=0-1,3-4', 10), undefined, 'multiple ranges: the whole blob')
  t.equal(parseRange('items=0-1', 10), undefined, 'another unit: ignored')
  for (const unsatisfiable of ['bytes=10-', 'bytes=10-12', 'bytes=-0']) t.equal(parseRange(unsatisfiable, 10), 'unsatisfiable', unsatisfiable)
  t.equal(parseRange('bytes=0-', 0), 'unsatisfiable', 'nothing to serve of an empty blob')
  t.equal(parseRange('bytes=-5', 0), 'unsatisfiable', 'not even a suffix')
})

t.test('Range: RFC 9110 details both doors share', async t => {
  for (const invalid of ['bytes=5-2', 'bytes=-', 'bytes=x-1', 'bytes=1-x', 'bytes 0-1', '=0-1', 'bytes=1--2']) t.equal(parseRange(invalid, 10), undefined, `${invalid}: invalid, ignored (200)`)
  for (const spelled of ['BYTES=0-1', 'Bytes=0-1', 'bytes = 0-1', ' bytes=0 - 1 ', 'bytes=\t0-1']) t.same(parseRange(spelled, 10), { start: 0, end: 1 }, `${JSON.stringify(spelled)}: the unit is case-insensitive, whitespace tolerated`)
  t.equal(parseRange(['bytes=0-1', 'bytes=2-3'], 10), undefined, 'two Range headers: the whole blob')
  t.equal(parseRange(`bytes=${'9'.repeat(30)}-`, 10), 'unsatisfiable', 'an absurd first byte')
  t.same(parseRange(`bytes=0-${'9'.repeat(30)}`, 10), { start: 0, end: 9 }, 'an absurd last byte is clamped')
})

t.test('Content-Range on upload chunks', async t => {
  t.same(parseContentRange('0-9'), { start: 0, end: 9 })
  t.same(parseContentRange('bytes 10-19/*'), { start: 10, end: 19 })
  t.same(parseContentRange('bytes=10-19'), { start: 10, end: 19 })
  for (const bad of ['', '5', '9-0', 'a-b', '-1-2', '0-9/x']) {
    t.throws(() => parseContentRange(bad), { code: 'BLOB_UPLOAD_INVALID' }, bad)
  }
})

t.test('upload Range header', async t => {
  t.equal(uploadRangeHeader(0), '0-0')
  t.equal(uploadRangeHeader(1), '0-0')
  t.equal(uploadRangeHeader(100), '0-99')
})
