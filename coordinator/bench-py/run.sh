#!/usr/bin/env bash
# candle vs PyTorch: the same discrete SAC, the same transitions, the same
# batches, the same initial weights. Runs the Rust bench (which also times
# training and decision latency, and dumps the replay), then the PyTorch
# twin on the dump, and prints one table with the steps/s ratio.
#
#   bash coordinator/bench-py/run.sh [STEPS] [--synthetic]
#
# PyTorch comes from PyPI (its Linux wheel is the CUDA build, ~5 GB with its
# CUDA libraries; it runs on the CPU here) into a venv under
# ~/.cache/netmoe/torch-venv, made once.
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS="${1:-600}"
EXTRA="${2:-}"
VENV="${NETMOE_TORCH_VENV:-$HOME/.cache/netmoe/torch-venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/netmoe/target}"
DUMP="$(mktemp -d)"
trap 'rm -rf "$DUMP"' EXIT

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import torch, numpy' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet torch numpy
fi

cargo bench -p netmoe-coordinator --bench rl -- --dump "$DUMP" --json "$DUMP/candle.json" --steps "$STEPS" $EXTRA
"$VENV/bin/python" coordinator/bench-py/sac_torch.py bench --dump "$DUMP" > "$DUMP/torch.json"
"$VENV/bin/python" coordinator/bench-py/sac_torch.py bench --dump "$DUMP" --threads 1 > "$DUMP/torch1.json"

python3 - "$DUMP" <<'EOF'
import json, sys
d = sys.argv[1]
c = json.load(open(f"{d}/candle.json"))
rows = [("candle", c)] + [
    (f"pytorch ({t['threads']} thread{'s' if t['threads'] > 1 else ''})", t)
    for t in (json.load(open(f"{d}/torch.json")), json.load(open(f"{d}/torch1.json")))
]
print()
print("| implementation | steps | seconds | steps/s | candle / this | critic loss after the run |")
print("|---|---|---|---|---|---|")
for name, r in rows:
    print(f"| {name} ({r['impl']}) | {r['steps']} | {r['seconds']:.3f} | {r['steps_per_s']:.1f} | "
          f"{c['steps_per_s'] / r['steps_per_s']:.2f} | {r['last']['critic']:.4f} |")
EOF
