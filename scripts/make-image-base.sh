#!/usr/bin/env bash
# A stand-in for the Dockerfile's BASE_IMAGE (node:20-bookworm-slim), made offline-capable from
# Debian packages: debootstrap's minbase bookworm, plus this machine's node and npm, plus this
# machine's npm cache (the image's `npm ci` then runs with npm_config_offline=true, which
# test/e2e/image.test.ts sets when importing it). The result is one tarball for `docker import`.
#
#   scripts/make-image-base.sh OUT.tar      (root; DEBIAN_MIRROR, default http://deb.debian.org/debian)
#
# npm test runs it outside the test network namespace and keeps the tarball in
# ${CROSSDOCK_IMAGE_BASE:-/tmp/crossdock-image-base/base.tar}, with OUT.tar.lock-sha256: the hash of
# the package-lock.json whose packages its npm cache holds. A new lockfile (a new dependency) makes
# npm test run it again; the debootstrap root (OUT.tar.rootfs.tar) is kept, so that takes seconds.
set -euo pipefail
out="$1"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
work="$(mktemp -d "${TMPDIR:-/tmp}/crossdock-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rootfs_tar="$out.rootfs.tar"
if [ ! -f "$rootfs_tar" ]; then
  echo "make-image-base: debootstrap --variant=minbase bookworm from $mirror" >&2
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # What the image build must not need: apt lists and docs.
  rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/usr/share/doc" "$work/rootfs/usr/share/man"
  mkdir -p "$(dirname "$out")"
  tar -C "$work/rootfs" -cf "$rootfs_tar.tmp" .
  mv "$rootfs_tar.tmp" "$rootfs_tar"
else
  mkdir -p "$work/rootfs"
  tar -C "$work/rootfs" -xf "$rootfs_tar"
fi
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
tar -C "$work/rootfs" -cf "$out.tmp" .
mv "$out.tmp" "$out"
sha256sum package-lock.json | cut -d' ' -f1 > "$out.lock-sha256"
echo "make-image-base: $out ($(du -h "$out" | cut -f1))" >&2
