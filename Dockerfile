# crossdock: HTTPS MITM caching proxy (:3128) + hosted OCI registry and pull-through endpoint (:5000).
#
#   docker build -t crossdock .
#   docker run -d -p 3128:3128 -p 5000:5000 -v crossdock-ca:/ca -v crossdock-cache:/docker_mirror_cache \
#     -v crossdock-registry:/registry_data crossdock
#
# Two stages: the build stage has the dev dependencies (TypeScript) and compiles; the runtime stage
# gets dist/ and production node_modules only. scripts/check-image-steps.sh runs the build stage's
# steps without a docker engine (CI); keep the two in step.
#
# BASE_IMAGE: a Debian-based image with Node.js 20 (groupadd/useradd needed), e.g. your internal
# mirror's copy:  docker build --build-arg BASE_IMAGE=mirror.internal/node:20-bookworm-slim .
ARG BASE_IMAGE=node:20-bookworm-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /app
# The lockfile first: the dependency layer is reused while only sources change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build \
 && chmod 755 dist/cli.js \
 && npm prune --omit=dev --no-audit --no-fund

FROM ${BASE_IMAGE}
ENV NODE_ENV=production \
    PROXY_PORT=3128 \
    REGISTRY_PORT=5000 \
    LISTEN_HOST=0.0.0.0 \
    CA_DIR=/ca \
    CACHE_DIR=/docker_mirror_cache \
    REGISTRY_STORAGE_DIR=/registry_data \
    SHUTDOWN_TIMEOUT=30s
# A fixed, unprivileged uid, so volume ownership is predictable across rebuilds and hosts.
RUN groupadd --system --gid 10001 crossdock \
 && useradd --system --uid 10001 --gid crossdock --home-dir /app --shell /usr/sbin/nologin crossdock \
 && mkdir -p /ca /docker_mirror_cache /registry_data \
 && chown crossdock:crossdock /ca /docker_mirror_cache /registry_data \
 && ln -s /app/dist/cli.js /usr/local/bin/crossdock
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
USER crossdock
EXPOSE 3128 5000
# The root CA (clients trust it: keep it across upgrades), the pull-through cache, hosted images.
VOLUME ["/ca", "/docker_mirror_cache", "/registry_data"]
# The slim image has no curl: Node's fetch, at the address the proxy door listens on (LISTEN_HOST;
# a wildcard means loopback answers). /healthz only says the process answers; /readyz (storage
# writable, disk above CACHE_MIN_FREE) is for load balancers and orchestrators' readiness probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "const h = process.env.LISTEN_HOST || '0.0.0.0'; const a = h === '0.0.0.0' ? '127.0.0.1' : h === '::' ? '[::1]' : h.includes(':') ? '[' + h + ']' : h; fetch('http://' + a + ':' + (process.env.PROXY_PORT || 3128) + '/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM drains requests in flight for up to SHUTDOWN_TIMEOUT; give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
# `crossdock` is also on PATH: docker exec <container> crossdock cache ls
ENTRYPOINT ["crossdock"]
CMD ["serve"]
