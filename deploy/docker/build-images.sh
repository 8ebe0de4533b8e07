#!/usr/bin/env bash
# Builds the netmoe/edge-node and netmoe/coordinator images without a
# registry: a minimal Debian bookworm root made with debootstrap from
# Debian's packages (cached as a tarball in ~/.cache/netmoe/docker), turned
# into the base image with `docker import`, then the host-built binaries
# (stripped) copied in by Dockerfile.local. Sourced or run; prints the sizes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
DOCKER_CACHE="$HOME/.cache/netmoe/docker"
BASE_TAR="$DOCKER_CACHE/base-bookworm.tar"
TAG="${NETMOE_IMAGE_TAG:-dev}"
mkdir -p "$DOCKER_CACHE"

if ! docker image inspect netmoe/base:bookworm >/dev/null 2>&1; then
  if [ ! -s "$BASE_TAR" ]; then
    command -v debootstrap >/dev/null || {
      echo "netmoe: installing debootstrap" >&2
      sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq debootstrap >/dev/null
    }
    root="$(mktemp -d)"
    echo "netmoe: debootstrap bookworm (minbase) into $root (a few minutes, once)" >&2
    debootstrap --variant=minbase --include=ca-certificates,iproute2,libgomp1 \
      bookworm "$root" http://deb.debian.org/debian >&2
    # What a runtime image does not need.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
      "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
      "$root"/usr/share/locale/* "$root"/var/log/* "$root"/debootstrap
    tar -C "$root" -cf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$root"
  fi
  echo "netmoe: importing the base image" >&2
  docker import "$BASE_TAR" netmoe/base:bookworm >/dev/null
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
for b in edge-node coordinator; do
  strip -o "$ctx/$b" "$NETMOE_BIN/$b"
done
cp "$NETMOE_ROOT/deploy/docker/Dockerfile.local" "$ctx/Dockerfile"
for t in edge-node coordinator; do
  echo "netmoe: building image netmoe/$t:$TAG" >&2
  docker build -q --target "$t" -t "netmoe/$t:$TAG" "$ctx" >/dev/null
done
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^netmoe/' >&2
