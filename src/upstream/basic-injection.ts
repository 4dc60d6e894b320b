/**
 * The MITM door's upstream credentials, rpardini's `$finalAuth` done right (reference §1.5):
 * the client runs the token dance itself through the proxy; when a request to a configured host
 * (or its token realm: auth.docker.io, gitlab.com…) carries **no** Authorization, Basic credentials
 * are added; a client's own Authorization (Bearer or Basic, e.g. after `docker login`) always passes
 * untouched. Redirects off the host lose the header in UpstreamClient.
 *
 * A 401 from a configured registry teaches which realm host its challenge names (when trusted, see
 * credentials.ts), so the client's token request to that realm gets the credentials too.
 *
 * Which credential (issue 19): the repository the request is about picks it — the `/v2/<name>/…`
 * path, or the `scope=repository:<name>:pull` of the client's token request — so one Docker Hub
 * organisation's credential is used for its repositories and another's for theirs. A credential
 * helper's answer the upstream refuses (401) is asked for again and the request sent once more; an
 * identity token (a helper's `<token>`) turns the client's token GET into the OAuth2 POST
 * (token-request.ts), whose `access_token` the client uses as it would a `token`.
 */
import { pickChallenge } from './auth-challenge.js'
import { basicAuthorization, repositoriesOf, type ResolvedCredential, type UpstreamCredentials } from './credentials.js'
import { discardBody } from './body.js'
import { tokenRequest } from './token-request.js'
import type { UpstreamRequester, UpstreamRequest, UpstreamResponse } from './upstream-client.js'

export class BasicInjectingUpstream implements UpstreamRequester {
  constructor (private readonly upstream: UpstreamRequester, private readonly credentials: UpstreamCredentials) {}

  async request (req: UpstreamRequest): Promise<UpstreamResponse> {
    const headers = req.headers ?? {}
    const clientSent = Object.keys(headers).some(k => k.toLowerCase() === 'authorization')
    const c = clientSent ? undefined : await this.credentials.resolve(req.host, repositoriesOf(req.path))
    let answer = await this.upstream.request(withCredential(req, c))
    // A refusal of the credential itself: the realm's 401, or a Basic registry's. (A Bearer
    // challenge from the registry only asks the client to fetch a token.)
    if (answer.status === 401 && (!req.path.startsWith('/v2/') || pickChallenge(answer.headers['www-authenticate'])?.scheme === 'basic')) {
      const fresh = req.body == null ? await this.credentials.refresh(c) : undefined
      if (fresh !== undefined) {
        discardBody(answer.body)
        answer = await this.upstream.request(withCredential(req, fresh))
      }
    }
    if (answer.status === 401) {
      const realm = pickChallenge(answer.headers['www-authenticate'])?.params.realm
      if (realm !== undefined) {
        try { this.credentials.learnRealm(req.host, new URL(realm).host) } catch { /* not a URL: nothing to learn */ }
      }
    }
    return answer
  }
}

/** `req` carrying `c`: Basic, or for an identity token the OAuth2 form of a token request. */
function withCredential (req: UpstreamRequest, c: ResolvedCredential | undefined): UpstreamRequest {
  if (c === undefined) return req
  if (c.identityToken !== true) return { ...req, headers: { ...req.headers, authorization: basicAuthorization(c) } }
  const url = new URL(req.path, `https://${req.host}`)
  // Only a token request can use an identity token; a registry request goes as the client sent it.
  if (req.method !== 'GET' || (!url.searchParams.has('service') && !url.searchParams.has('scope'))) return req
  const query = new URLSearchParams(url.search)
  const realm = new URL(url.pathname, url.origin)
  const exchange = tokenRequest(realm, query, c)
  return { ...req, ...exchange, headers: { ...req.headers, ...exchange.headers } }
}
