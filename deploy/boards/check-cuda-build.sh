#!/usr/bin/env bash
# Checks that the edge node's `cuda` feature (llama-cpp-2's CUDA backend, as
# on a Jetson) compiles and links on an x86-64 Debian 12 machine without a
# GPU, against Debian's own CUDA toolkit (package nvidia-cuda-toolkit, in
# the non-free component, which this script enables for that one install).
# Only one GPU architecture is compiled (sm_87, Jetson Orin; --arch to
# change) into a separate target dir. Not run in CI: it downloads 1.6 GB,
# and the first build took an hour on 2 cores. Nothing is run on a GPU.
#   sudo ./deploy/boards/check-cuda-build.sh [--arch 87]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ARCH=87
while (($#)); do
  case "$1" in
    --arch) ARCH="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
TARGET="${NETMOE_CUDA_TARGET_DIR:-$HOME/.cache/netmoe/target-cuda}"
say() { echo "check-cuda-build: $*" >&2; }
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"

if ! command -v nvcc >/dev/null; then
  grep -q '^12' /etc/debian_version 2>/dev/null ||
    { say "no nvcc, and this is not Debian 12: install a CUDA toolkit, then run again"; exit 1; }
  list=/etc/apt/sources.list.d/netmoe-cuda-non-free.sources
  say "enabling Debian's non-free component for nvidia-cuda-toolkit ($list)"
  $sudo tee "$list" >/dev/null <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: contrib non-free non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  $sudo apt-get update -qq
  say "installing nvidia-cuda-toolkit (several GB)"
  # nvidia-cuda-toolkit-gcc: g++-11, the newest host compiler CUDA 11.8 takes
  # (Debian 12's own g++ is 12), behind /usr/bin/cuda-g++.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    nvidia-cuda-toolkit nvidia-cuda-toolkit-gcc nvidia-cuda-dev >/dev/null
  $sudo rm -f "$list"
  $sudo apt-get update -qq
fi
say "$(nvcc --version | tail -2 | head -1)"

# llama-cpp-sys-2 links the static CUDA libraries (cudart_static,
# cublas_static, cublasLt_static, culibos) and libcuda from the directories
# find_cuda_helper knows: <root>/lib64 and <root>/lib64/stubs of /usr/local/cuda,
# /opt/cuda or CUDA_LIBRARY_PATH's roots. Debian keeps them in the multiarch
# directory (the driver stub in its stubs/), so a root whose lib64 points
# there is made for it. CUDA_PATH makes the build script run again when this
# changes.
cudart="$(ls /usr/local/cuda/lib64/libcudart_static.a /usr/lib/*/libcudart_static.a 2>/dev/null | head -1 || true)"
[ -n "$cudart" ] || { say "libcudart_static.a not found (Debian: package nvidia-cuda-dev)"; exit 1; }
shim="$TARGET/cuda-root"
mkdir -p "$shim"
ln -sfn "$(dirname "$cudart")" "$shim/lib64"
say "CUDA libraries from $(dirname "$cudart")"

say "building edge-node --features cuda for sm_$ARCH into $TARGET"
start=$SECONDS
(
  cd "$ROOT"
  export CARGO_TARGET_DIR="$TARGET" CMAKE_CUDA_ARCHITECTURES="$ARCH"
  export CUDA_LIBRARY_PATH="$shim" CUDA_PATH="$(dirname "$(dirname "$(command -v nvcc)")")"
  # llama-cpp-sys-2 hands every CMAKE_* variable to cmake.
  if command -v cuda-g++ >/dev/null; then export CMAKE_CUDA_HOST_COMPILER="$(command -v cuda-g++)"; fi
  cargo build --release -p netmoe-edge-node --bin edge-node --features cuda
)
say "built in $((SECONDS - start)) s"
bin="$TARGET/release/edge-node"
out="$(ls -d "$TARGET"/release/build/llama-cpp-sys-2-*/out | head -1)"
grep -E '^(GGML_CUDA|CMAKE_CUDA_ARCHITECTURES|CMAKE_CUDA_HOST_COMPILER)[:=]' "$out/build/CMakeCache.txt" >&2 || true
if command -v cuobjdump >/dev/null; then
  # The binary also holds cuBLAS's kernels for every architecture; ggml's own
  # are in its static library.
  say "ggml's CUDA kernels: $(cuobjdump --list-elf "$out"/lib*/libggml-cuda.a 2>/dev/null | grep -o 'sm_[0-9]*' | sort | uniq -c | tr -s ' \n' ' ')"
fi
say "dynamically linked CUDA libraries: $(ldd "$bin" | grep -oE 'lib(cuda|cudart|cublas)[^ ]*' | sort -u | tr '\n' ' ')(cudart and cuBLAS are static)"
say "built $("$bin" --version)"
echo "$bin"
