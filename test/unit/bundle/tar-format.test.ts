// The tar format of bundles: sizes beyond ustar's 8 GiB in base-256 (a 10 GB layer), PAX and GNU
// long-name records as Go's archive/tar (skopeo) writes them, checksums, and a streamed round trip.
import t from 'tap'
import { createWriteStream } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { BLOCK, decodeHeader, encodeHeader, padding, END_OF_ARCHIVE } from '../../../src/bundle/tar-format.js'
import { TarWriter } from '../../../src/bundle/tar-writer.js'
import { TarIndex } from '../../../src/bundle/tar-index.js'

t.test('sizes: octal up to 8 GiB - 1, base-256 beyond', async t => {
  for (const size of [0, 1, 0o77777777777, 10_000_000_000, 2 ** 40]) {
    t.same(decodeHeader(encodeHeader('blobs/sha256/x', size)), { name: 'blobs/sha256/x', size, type: 'file' }, String(size))
  }
  t.equal(encodeHeader('x', 10_000_000_000)[124], 0x80, 'GNU base-256 marker')
})

t.test('a damaged header is refused; a zero block ends the archive', async t => {
  const h = encodeHeader('oci-layout', 30)
  h[0] ^= 1
  t.throws(() => decodeHeader(h), /not a tar archive/)
  t.equal(decodeHeader(Buffer.alloc(BLOCK)), undefined)
})

t.test('the index reads PAX paths/sizes and GNU long names, and skips directories', async t => {
  const dir = t.testdir({})
  const long = `blobs/sha256/${'a'.repeat(120)}`
  const pax = (records: Record<string, string>): Buffer => Buffer.concat(Object.entries(records).map(([k, v]) => {
    const body = ` ${k}=${v}\n`
    let len = body.length + 1
    while (String(len).length + body.length !== len) len = String(len).length + body.length
    return Buffer.from(`${len}${body}`)
  }))
  const paxData = pax({ path: long })
  const paxHeader = encodeHeader('PaxHeaders/x', paxData.length)
  paxHeader[156] = 'x'.charCodeAt(0)
  fixChecksum(paxHeader)
  const gnuName = Buffer.from('./index.json\0')
  const gnuHeader = encodeHeader('././@LongLink', gnuName.length)
  gnuHeader[156] = 'L'.charCodeAt(0)
  fixChecksum(gnuHeader)
  const file = join(dir, 'a.tar')
  await writeFile(file, Buffer.concat([
    encodeHeader('blobs/', 0, 'directory'),
    paxHeader, paxData, padding(paxData.length), encodeHeader('short-name', 5), Buffer.from('hello'), padding(5),
    gnuHeader, gnuName, padding(gnuName.length), encodeHeader('trunc', 2), Buffer.from('{}'), padding(2),
    END_OF_ARCHIVE,
  ]))
  const index = await TarIndex.open(file)
  t.same([...index.entries.keys()], [long, 'index.json'])
  t.equal((await index.read(index.get(long)!)).toString(), 'hello')
  t.equal((await index.read(index.get('index.json')!)).toString(), '{}')
})

t.test('TarWriter streams entries and checks their length; the index finds them', async t => {
  const dir = t.testdir({})
  const file = join(dir, 'b.tar')
  const out = createWriteStream(file)
  const tar = new TarWriter(out)
  await tar.file('oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}'))
  const chunks = [Buffer.alloc(700_000, 1), Buffer.alloc(300_001, 2)]
  await tar.stream('blobs/sha256/big', 1_000_001, Readable.from(chunks))
  await t.rejects(tar.stream('blobs/sha256/short', 10, Readable.from([Buffer.alloc(4)])), /4 bytes where 10 were announced/)
  const tar2 = new TarWriter(createWriteStream(join(dir, 'c.tar')))
  await tar2.file('a', Buffer.from('x'))
  await tar2.finish()
  out.destroy()
  const idx = await TarIndex.open(join(dir, 'c.tar'))
  t.equal((await idx.read(idx.get('a')!)).toString(), 'x')
  const big = await TarIndex.open(file).catch(e => e)
  t.match(big, { message: /truncated tar archive/ }, 'an archive cut mid-entry says so')
})

function fixChecksum (h: Buffer): void {
  h.fill(0x20, 148, 156)
  let sum = 0
  for (const b of h) sum += b
  h.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'ascii')
}
