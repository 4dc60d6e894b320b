#!/usr/bin/env bash
# A stand-in for the Dockerfile's BASE_IMAGE (node:20-bookworm-slim), made offline-capable from
# Debian packages: debootstrap's minbase bookworm, plus this machine's node and npm, plus this
# machine's npm cache (the image's `npm ci` then runs with npm_config_offline=true, which
# test/e2e/image.test.ts sets when importing it). The result is one tarball for `docker import`.
#
#   scripts/make-image-base.sh OUT.tar      (root; DEBIAN_MIRROR, default http://deb.debian.org/debian)
#
# npm test runs it once, outside the test network namespace, and keeps the tarball in
# ${CROSSDOCK_IMAGE_BASE:-/tmp/crossdock-image-base/base.tar}.
set -euo pipefail
out="$1"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
work="$(mktemp -d "${TMPDIR:-/tmp}/crossdock-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "make-image-base: debootstrap --variant=minbase bookworm from $mirror" >&2
debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
node_bin="$(command -v node)"
npm_dir="$(dirname "$(readlink -f "$(command -v npm)")")/.."
cp "$node_bin" "$work/rootfs/usr/bin/node"
mkdir -p "$work/rootfs/usr/lib/node_modules"
cp -R "$npm_dir" "$work/rootfs/usr/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$work/rootfs/usr/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$work/rootfs/usr/bin/npx"
cache="$(npm config get cache)"
mkdir -p "$work/rootfs/root/.npm"
cp -R "$cache/_cacache" "$work/rootfs/root/.npm/_cacache"
# What the image build must not need: apt lists and docs.
rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/usr/share/doc" "$work/rootfs/usr/share/man"
mkdir -p "$(dirname "$out")"
tar -C "$work/rootfs" -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "make-image-base: $out ($(du -h "$out" | cut -f1))" >&2
