#!/usr/bin/env bash
# Validates the Kubernetes manifests against the Kubernetes schemas
# (kubernetes-validate from PyPI, in a cached venv) and the systemd unit
# with systemd-analyze verify. Exit non-zero on any finding.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$HOME/.cache/netmoe/venv-deploy"
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q kubernetes-validate==1.37.0
fi
"$VENV/bin/kubernetes-validate" --strict -k 1.31.0 "$ROOT"/deploy/k8s/*.yaml
bin="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/netmoe/target}/release/edge-node}"
unit="$(mktemp -d)/netmoe-edge-node.service"
sed "s#/usr/local/bin/edge-node#$bin#" "$ROOT/deploy/boards/netmoe-edge-node.service" > "$unit"
systemd-analyze verify "$unit"
echo "systemd unit ok"
