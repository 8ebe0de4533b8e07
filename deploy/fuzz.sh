#!/usr/bin/env bash
# Fuzzes every decoder NetMoE owns that reads a peer's or a user's bytes
# (tests/fuzz: QUIC link frames, GGUF headers, SNR traces, join tokens and
# CSRs, certificate identities) with cargo fuzz (libFuzzer + AddressSanitizer),
# each for a bounded time, starting from the seeds in tests/fuzz/seeds and
# the corpus cached in ~/.cache/netmoe/fuzz-corpus. Installs cargo-fuzz if
# missing. A crash fails the run; its input is in tests/fuzz/artifacts/ and
# belongs in a regression test.
#   NETMOE_FUZZ_SECONDS  seconds per target (default 30)
#   targets as arguments (default: all)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_EACH="${NETMOE_FUZZ_SECONDS:-30}"
CACHE="$HOME/.cache/netmoe"
TARGET_DIR="$CACHE/fuzz-target"
# The one toolchain here is stable; cargo fuzz needs nightly-only flags
# (-Zsanitizer), which RUSTC_BOOTSTRAP unlocks on it.
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || {
  echo "netmoe: installing cargo-fuzz (once)" >&2
  cargo install cargo-fuzz --locked --quiet
}
cd "$ROOT/tests/fuzz"
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cargo fuzz list --fuzz-dir .)
fi
echo "netmoe: building ${#targets[@]} fuzz targets (AddressSanitizer)" >&2
cargo fuzz build --fuzz-dir . -O --target-dir "$TARGET_DIR"
printf '%-18s %10s %8s  %s\n' target runs seconds result
for t in "${targets[@]}"; do
  corpus="$CACHE/fuzz-corpus/$t"
  mkdir -p "$corpus" artifacts/"$t"
  log="$(mktemp)"
  status=ok
  if ! cargo fuzz run --fuzz-dir . -O --target-dir "$TARGET_DIR" "$t" "$corpus" "seeds/$t" -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=65536 \
      -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
    status="CRASH (see tests/fuzz/artifacts/$t/)"
  fi
  runs="$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -1 || true)"
  printf '%-18s %10s %8s  %s\n' "$t" "${runs:-?}" "$SECONDS_EACH" "$status"
  if [ "$status" != ok ]; then
    tail -40 "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
done
