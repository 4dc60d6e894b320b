/**
 * Client access control as both doors see it: one hook shape, implemented by auth/client-auth.ts
 * (HTPASSWD_FILE) and called by the hosted registry and the registry door's upstream namespaces.
 */
import type { IncomingMessage } from 'node:http'

/** What a request wants to do (spec routes map to one each). */
export type Action = 'ping' | 'catalog' | 'pull' | 'push' | 'delete'

export interface Access {
  action: Action
  /** The repository (hosted name, or `host/repository` of an upstream namespace), for pull/push/delete. */
  name?: string
}

/**
 * Decides whether `req` may do `access`: resolves to allow; throws OciError UNAUTHORIZED (with a
 * WWW-Authenticate header) or DENIED to refuse. Absent: everything is allowed (client auth is a
 * separate concern, plugged in by the composition root).
 */
export type Authorizer = (req: IncomingMessage, access: Access) => Promise<void>
