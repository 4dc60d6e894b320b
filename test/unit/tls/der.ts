/** Test helper: reads the DER serialNumber INTEGER of a certificate without trusting any parser's view of it. */
export function serialBytes (der: Buffer): Buffer {
  const header = (at: number): { content: number, length: number } => {
    const first = der[at + 1]
    if (first < 0x80) return { content: at + 2, length: first }
    const n = first & 0x7f
    return { content: at + 2 + n, length: der.readUIntBE(at + 2, n) }
  }
  // Certificate SEQUENCE → TBSCertificate SEQUENCE → [0] version, then serialNumber.
  const tbs = header(header(0).content).content
  const version = header(tbs)
  const serial = header(version.content + version.length)
  return der.subarray(serial.content, serial.content + serial.length)
}
