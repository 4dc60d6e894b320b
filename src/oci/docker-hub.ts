/**
 * Docker Hub's names, as clients write them: `docker pull alpine` means registry
 * `registry-1.docker.io` (also spelt `docker.io` and `index.docker.io`) and repository
 * `library/alpine`; its token realm is `auth.docker.io`; `docker login` stores its credentials
 * under `https://index.docker.io/v1/`.
 */
export const DOCKER_HUB = 'registry-1.docker.io'
/** The spellings of Docker Hub's registry host. */
export const DOCKER_HUB_ALIASES: ReadonlySet<string> = new Set(['docker.io', 'index.docker.io', DOCKER_HUB])
/** Its token realm host. */
export const DOCKER_HUB_REALM = 'auth.docker.io'
/** The server URL credential stores (and helpers) keep Docker Hub's credentials under. */
export const DOCKER_HUB_SERVER_URL = 'https://index.docker.io/v1/'

/** Whether `host` (any case, `:443` or not) is one of Docker Hub's registry names or its realm. */
export function isDockerHub (host: string): boolean {
  const h = host.toLowerCase().replace(/:443$/, '')
  return DOCKER_HUB_ALIASES.has(h) || h === DOCKER_HUB_REALM
}

/** Docker Hub's official images live under `library/`: `alpine` means `library/alpine`. */
export function hubName (host: string, name: string): string {
  return isDockerHub(host) && !name.includes('/') ? `library/${name}` : name
}
