import t from 'tap'
import { parseRange, parseContentRange, uploadRangeHeader } from '../../../src/registry/ranges.js'

const is416 = (size: number): { code: string, status: number, headers: Record<string, string> } => ({ code: 'RANGE_INVALID', status: 416, headers: { 'content-range': `bytes */${size}` } })

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
  for (const bad of ['bytes=10-', 'bytes=5-2', 'bytes=-0', 'bytes=-', 'bytes=x-1']) t.throws(() => parseRange(bad, 10), is416(10), bad)
  t.throws(() => parseRange('bytes=0-', 0), is416(0), 'nothing to serve of an empty blob')
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
