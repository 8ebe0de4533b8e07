#!/usr/bin/env bash
# Builds the multi-stage Dockerfile (the from-source images) on a machine
# that cannot pull images: both of its base images are made here first.
# - runtime base: netmoe/base:bookworm, the debootstrap root of
#   build-images.sh (Debian's own packages, docker import);
# - build base: netmoe/rust-build:bookworm, a bookworm minbase with
#   build-essential, git and pkg-config from Debian, this host's Rust
#   toolchain (rustc, cargo, the x86-64 std) copied into /usr/local/rust
#   where rust:1-bookworm keeps it, and the trust anchors this host added
#   (/usr/local/share/ca-certificates: a network that inspects TLS needs
#   them for crates.io, as the host does).
# Then `docker build` of deploy/docker/Dockerfile on the committed tree
# (HEAD) with RUST_IMAGE and RUNTIME_IMAGE pointing at them; the build stage fetches crates from
# crates.io and Debian packages (cmake, clang) as it would anywhere.
# Tags netmoe/edge-node:src and netmoe/coordinator:src (NETMOE_IMAGE_TAG).
# The from-source build compiles every llama.cpp CPU variant: ~30-40 min on
# 2 cores the first time; docker's layer cache makes a rerun with the same
# sources immediate.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
TAG="${NETMOE_IMAGE_TAG:-src}"
DOCKER_CACHE="$HOME/.cache/netmoe/docker"
BUILD_TAR="$DOCKER_CACHE/rust-build-bookworm.tar"
mkdir -p "$DOCKER_CACHE"
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"

# The runtime base (and the host-built images, unused here) as the compose
# cluster makes them; only the base is needed.
if ! docker image inspect netmoe/base:bookworm >/dev/null 2>&1; then
  bash "$here/build-images.sh"
fi

if ! docker image inspect netmoe/rust-build:bookworm >/dev/null 2>&1; then
  if [ ! -s "$BUILD_TAR" ]; then
    command -v debootstrap >/dev/null ||
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq debootstrap >/dev/null
    dir="$(mktemp -d)"
    echo "netmoe: debootstrap bookworm (minbase + build-essential) into $dir (a few minutes, once)" >&2
    debootstrap --variant=minbase --include=build-essential,ca-certificates,git,pkg-config \
      bookworm "$dir" http://deb.debian.org/debian >&2
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/debootstrap
    tar -C "$dir" -cf "$BUILD_TAR.tmp" . && mv "$BUILD_TAR.tmp" "$BUILD_TAR"
    rm -rf "$dir"
  fi
  toolchain="$(dirname "$(dirname "$(rustup which rustc 2>/dev/null || command -v rustc)")")"
  echo "netmoe: build base = bookworm + the Rust toolchain in $toolchain ($(rustc --version))" >&2
  ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' EXIT
  docker import "$BUILD_TAR" netmoe/rust-build-os:bookworm >/dev/null
  mkdir -p "$ctx/rust" "$ctx/ca"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
  # The compiler, cargo and the host's std; not the documentation.
  for d in bin lib libexec etc; do
    [ -d "$toolchain/$d" ] && cp -a "$toolchain/$d" "$ctx/rust/"
  done
  cat >"$ctx/Dockerfile" <<'EOF'
FROM netmoe/rust-build-os:bookworm
COPY rust /usr/local/rust
COPY ca /usr/local/share/ca-certificates
RUN update-ca-certificates >/dev/null
ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HOME=/usr/local/cargo
RUN cargo --version && rustc --version
EOF
  docker build -q -t netmoe/rust-build:bookworm "$ctx" >/dev/null
fi

# The context is the committed tree (git archive of HEAD as the script
# starts): the same bytes and times for both targets, so the second reuses
# the first's build stage.
rev="$(git -C "$root" rev-parse HEAD)"
for t in edge-node coordinator; do
  echo "netmoe: building netmoe/$t:$TAG from source (deploy/docker/Dockerfile, ${rev:0:7})" >&2
  git -C "$root" archive --format=tar "$rev" |
    docker build --target "$t" \
      --build-arg RUST_IMAGE=netmoe/rust-build:bookworm \
      --build-arg RUNTIME_IMAGE=netmoe/base:bookworm \
      -f deploy/docker/Dockerfile -t "netmoe/$t:$TAG" -
done
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^netmoe/(edge-node|coordinator):$TAG" >&2
