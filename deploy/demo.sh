#!/usr/bin/env bash
# The main job: installs what is missing, builds, fetches the model, then
# starts a coordinator and three edge experts as separate processes on
# loopback, answers the prompt (or a default one), prints the story and
# the cost table, and shuts everything down. The coordinator routes with
# the shipped trained SAC policy behind the gate (`sac+gate`: each segment
# on an expert of its domain whenever the channel allows it). Extra flags
# go to `coordinator demo` (e.g. --policy sac for the policy alone,
# --json, -k 3).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
policy=()
if [ -f "$NETMOE_ROOT/coordinator/data/rl/sac_policy.json" ]; then
  policy=(--policy-file "$NETMOE_ROOT/coordinator/data/rl/sac_policy.json")
fi
exec "$NETMOE_BIN/coordinator" demo --model "$NETMOE_MODEL_PATH" "${policy[@]}" "$@"
