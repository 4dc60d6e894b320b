#!/usr/bin/env bash
# The Dockerfile's build steps, run where there is no docker engine (CI, `npm test`): in a temp
# copy holding only what the image build copies in, `npm ci`, `npm run build`,
# `npm prune --omit=dev`; then the production-only tree must run: the CLI, its help, and the whole
# service module graph (a runtime import of a dev dependency fails here, not in the image).
# Keep the steps in step with the Dockerfile (test/integration/ops/image-steps.test.ts checks both).
#
# npm flags come from the environment as usual: npm_config_offline=true installs from the npm
# cache only (no network; what the test does).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/crossdock-image-steps.XXXXXX")"
trap 'rm -rf "$work"' EXIT

step() { printf 'check-image-steps: %s\n' "$*" >&2; }

# What the Dockerfile's build stage COPYs.
cp "$repo/package.json" "$repo/package-lock.json" "$repo/tsconfig.json" "$work/"
cp -R "$repo/src" "$work/src"
cd "$work"

step "npm ci"
npm ci --no-audit --no-fund --loglevel=error
step "npm run build"
npm run build --silent
chmod 755 dist/cli.js
step "npm prune --omit=dev"
npm prune --omit=dev --no-audit --no-fund --loglevel=error

step "production tree checks"
for dev in typescript tap tsx; do
  if [ -e "node_modules/$dev" ]; then echo "check-image-steps: dev dependency $dev left after prune" >&2; exit 1; fi
done
# What the image's /usr/local/bin/crossdock link runs: the file itself, through its #! line.
./dist/cli.js --version | grep -q '^crossdock [0-9]' || { echo "check-image-steps: dist/cli.js --version (via #!) failed" >&2; exit 1; }
node dist/cli.js --help | grep -q '^Usage: crossdock' || { echo "check-image-steps: crossdock --help failed" >&2; exit 1; }
CA_DIR="$work/ca" CACHE_DIR="$work/cache" REGISTRY_STORAGE_DIR="$work/registry" node dist/cli.js config check >/dev/null
node --input-type=module -e "await import('$work/dist/app.js')"
step "ok"
