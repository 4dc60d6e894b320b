/**
 * The part of cacache@20's API crossdock uses (the package ships no types). Shapes read from
 * node_modules/cacache/lib (entry-index.js, get.js, rm.js, util/tmp.js) at 20.0.4.
 */
declare module 'cacache' {
  export interface CacheEntry {
    key: string
    /** SRI string, e.g. `sha256-<base64>`. */
    integrity: string
    /** Where cacache keeps the content: `<cache>/content-v2/<algo>/<2>/<2>/<rest of hex>`. */
    path: string
    size?: number
    /** Milliseconds since the epoch when the entry was inserted. */
    time: number
    metadata?: unknown
  }

  export interface PutOptions {
    algorithms?: string[]
    integrity?: string
    metadata?: unknown
    size?: number
    time?: number
  }

  /** Resolves with an ssri Integrity object (its `toString()` is the SRI string). */
  export function put (cache: string, key: string, data: Buffer | Uint8Array | string, opts?: PutOptions): Promise<{ toString: () => string }>
  export function ls (cache: string): Promise<Record<string, CacheEntry>>

  export namespace get {
    function info (cache: string, key: string, opts?: { memoize?: boolean }): Promise<CacheEntry | null>
    function hasContent (cache: string, integrity: string): Promise<false | { size: number, sri: unknown }>
  }
  export function get (cache: string, key: string, opts?: { memoize?: boolean }): Promise<{ data: Buffer, metadata?: unknown, integrity: string, size: number }>

  export namespace rm {
    function entry (cache: string, key: string, opts?: { removeFully?: boolean }): Promise<unknown>
    function content (cache: string, integrity: string): Promise<boolean>
    function all (cache: string): Promise<unknown>
  }

  export namespace index {
    function insert (cache: string, key: string, integrity: string, opts?: { size?: number, metadata?: unknown, time?: number }): Promise<CacheEntry | undefined>
    function compact (cache: string, key: string, matchFn: (a: CacheEntry, b: CacheEntry) => boolean, opts?: unknown): Promise<CacheEntry[]>
  }

  export namespace tmp {
    function mkdir (cache: string, opts?: { tmpPrefix?: string }): Promise<string>
  }

  export function clearMemoized (): Record<string, unknown>
}
