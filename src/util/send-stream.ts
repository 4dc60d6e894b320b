/**
 * Copies a readable into a response without ending it and without destroying it on a failure of
 * the source: the caller decides what a failure means (an error answer while no byte went out, an
 * abort after). `pipeline` cannot be told that: it destroys the response on any error, so a source
 * that fails before its first byte left the client with a closed connection and no status line.
 */
import type { Readable, Writable } from 'node:stream'

/** The response closed before the body was sent: the client went away. */
export class ClientGoneError extends Error {
  readonly code = 'ERR_CLIENT_GONE'
  constructor (what = 'response closed before the body was sent') {
    super(what)
    this.name = 'ClientGoneError'
  }
}

/** True when `err` says the client went away (nothing the server should count as its failure). */
export function isClientGone (err: unknown): boolean {
  return (err as { code?: string })?.code === 'ERR_CLIENT_GONE'
}

/**
 * Resolves once `src` ended and everything was handed to `out`; rejects with `src`'s error, or a
 * ClientGoneError when `out` closes first (then `src` is destroyed). Backpressure: waits for
 * 'drain' whenever `out` asks. `written`, if given, gets each chunk once `out` has written it
 * (its write callback without an error): nothing holds the chunk any more.
 */
export async function sendStream (src: Readable, out: Writable, written?: (chunk: Buffer) => void): Promise<void> {
  const onClose = (): void => { src.destroy(new ClientGoneError()) }
  out.once('close', onClose)
  try {
    for await (const chunk of src) {
      const more = written === undefined ? out.write(chunk) : out.write(chunk, (err?: Error | null) => { if (err == null) written(chunk as Buffer) })
      if (more) continue
      await new Promise<void>(resolve => {
        const done = (): void => { out.off('drain', done); out.off('close', done); resolve() }
        out.on('drain', done)
        out.on('close', done)
      })
      if (out.destroyed) throw new ClientGoneError()
    }
  } finally {
    out.off('close', onClose)
  }
}
