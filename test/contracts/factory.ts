/**
 * How a contract suite gets the implementation under test: backend-neutral, so an object-store or
 * Redis backend passes the same suite as the local directory. `make` opens a fresh, empty store
 * (its own bucket prefix, directory, key namespace…); `teardown` releases and deletes it; `reopen`,
 * when the backend persists, closes the store and opens the same one again (durability cases are
 * skipped without it).
 */
export interface ContractFactory<S> {
  /** Shown in test names (`fs`, `cacache`, `s3`). */
  name: string
  make: () => Promise<S>
  teardown: (store: S) => Promise<void>
  reopen?: (store: S) => Promise<S>
}
