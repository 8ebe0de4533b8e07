#!/usr/bin/env bash
# The test command: installs what is missing, builds, fetches the model,
# then runs every unit, doc and integration test (real processes, real
# sockets, the real model). Integration tests run one at a time: each starts
# its own llama.cpp processes, and the machine has few cores.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$NETMOE_ROOT"

# What only the tests need: promtool (Debian's prometheus package) to check
# /metrics, and the official openai Python client in a cached venv.
if ! command -v promtool >/dev/null; then
  echo "netmoe: installing prometheus (for promtool)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
NETMOE_TEST_VENV="$HOME/.cache/netmoe/venv-test"
if ! "$NETMOE_TEST_VENV/bin/python" -c "import openai" 2>/dev/null; then
  echo "netmoe: making $NETMOE_TEST_VENV with the openai client" >&2
  python3 -m venv "$NETMOE_TEST_VENV"
  "$NETMOE_TEST_VENV/bin/pip" install -q "openai==1.109.1"
fi
NETMOE_TEST_MODEL="$NETMOE_MODEL_PATH" NETMOE_TEST_INSTRUCT_MODEL="$NETMOE_INSTRUCT_MODEL_PATH" cargo test --release --workspace -- --test-threads=1 "$@"
