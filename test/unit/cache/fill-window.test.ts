import t from 'tap'
import { FillWindow } from '../../../src/cache/fill-window.js'

t.test('append waits while the window is over its bound, until readers drop what they passed', async t => {
  const w = new FillWindow(100, 8)
  await w.append([Buffer.from('abcd')])
  let resolved = false
  const blocked = w.append([Buffer.from('efgh'), Buffer.from('ij')]).then(() => { resolved = true })
  await new Promise(resolve => setImmediate(resolve))
  t.equal(resolved, false, '10 bytes held > 8: the writer waits (the upstream pauses)')
  t.same(w.read(100, 100), Buffer.from('abcd'), 'reads stay within one chunk')
  t.same(w.read(106, 1), Buffer.from('g'))
  t.equal(w.read(99, 1), undefined, 'before the window: gone')
  t.equal(w.read(110, 1)?.length, 0, 'at the end: nothing yet')
  w.drop(103)
  await new Promise(resolve => setImmediate(resolve))
  t.equal(resolved, false, 'only whole chunks are dropped')
  w.drop(104)
  await blocked
  t.equal(w.start, 104)
  t.equal(w.held, 6)
  t.equal(w.read(102, 1), undefined)
})

t.test('release unblocks the writer but keeps the bytes for readers still finishing', async t => {
  const w = new FillWindow(0, 2)
  const blocked = w.append([Buffer.from('abc')])
  w.release()
  await blocked
  t.same(w.read(0, 3), Buffer.from('abc'))
  await w.append([Buffer.from('def')])
  t.equal(w.end, 6, 'appends after release no longer wait')
})
