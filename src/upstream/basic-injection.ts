/**
 * The MITM door's upstream credentials, rpardini's `$finalAuth` done right (reference §1.5):
 * the client runs the token dance itself through the proxy; when a request to a configured host
 * (or its token realm: auth.docker.io, gitlab.com…) carries **no** Authorization, Basic credentials
 * are added; a client's own Authorization (Bearer or Basic, e.g. after `docker login`) always passes
 * untouched. Redirects off the host lose the header in UpstreamClient.
 *
 * A 401 from a configured registry teaches which realm host its challenge names (when trusted, see
 * credentials.ts), so the client's token request to that realm gets the credentials too.
 */
import { pickChallenge } from './auth-challenge.js'
import { basicAuthorization, type UpstreamCredentials } from './credentials.js'
import type { UpstreamRequester, UpstreamRequest, UpstreamResponse } from './upstream-client.js'

export class BasicInjectingUpstream implements UpstreamRequester {
  constructor (private readonly upstream: UpstreamRequester, private readonly credentials: UpstreamCredentials) {}

  async request (req: UpstreamRequest): Promise<UpstreamResponse> {
    const headers = req.headers ?? {}
    const c = this.credentials.forHost(req.host)
    const clientSent = Object.keys(headers).some(k => k.toLowerCase() === 'authorization')
    const answer = await this.upstream.request(c !== undefined && !clientSent ? { ...req, headers: { ...headers, authorization: basicAuthorization(c) } } : req)
    if (answer.status === 401 && c !== undefined) {
      const realm = pickChallenge(answer.headers['www-authenticate'])?.params.realm
      if (realm !== undefined) {
        try { this.credentials.learnRealm(req.host, new URL(realm).host) } catch { /* not a URL: nothing to learn */ }
      }
    }
    return answer
  }
}
