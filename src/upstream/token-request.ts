/**
 * The request for a registry token at a realm, with the credential crossdock holds for it
 * (distribution's token spec; the OAuth2 form is docker/cli's and containerd's for identity tokens):
 *
 *   no credential ──────────► GET  realm?service=&scope=                       (anonymous)
 *   user + password ────────► GET  realm?service=&scope=  Authorization: Basic
 *   identity token ─────────► POST realm  grant_type=refresh_token&refresh_token=…&service=&scope=
 *   (a helper's `<token>`)         &client_id=crossdock  (form body; the answer's access_token)
 */
import { Readable } from 'node:stream'
import { basicAuthorization, type ResolvedCredential } from './credentials.js'
import type { UpstreamRequest } from './upstream-client.js'

/** The client id crossdock names itself by in OAuth2 token requests (docker/cli sends `docker`). */
export const OAUTH_CLIENT_ID = 'crossdock'

export function tokenRequest (realm: URL, query: URLSearchParams, c: ResolvedCredential | undefined): Pick<UpstreamRequest, 'method' | 'path' | 'headers' | 'body'> {
  if (c?.identityToken === true) {
    const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: c.password, client_id: OAUTH_CLIENT_ID })
    const service = query.get('service')
    if (service !== null) form.set('service', service)
    const scopes = query.getAll('scope')
    if (scopes.length > 0) form.set('scope', scopes.join(' '))
    const body = Buffer.from(form.toString())
    return {
      method: 'POST',
      path: `${realm.pathname}${realm.search}`,
      headers: { accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(body.length) },
      body: Readable.from([body]),
    }
  }
  return {
    method: 'GET',
    path: `${realm.pathname}?${query.toString()}`,
    headers: { accept: 'application/json', ...(c !== undefined ? { authorization: basicAuthorization(c) } : {}) },
  }
}
