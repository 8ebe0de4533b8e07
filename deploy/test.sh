#!/usr/bin/env bash
# The test command: installs what is missing, builds, fetches the model,
# then runs every unit, doc and integration test (real processes, real
# sockets, the real model). Integration tests run one at a time: each starts
# its own llama.cpp processes, and the machine has few cores.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$NETMOE_ROOT"

# What only the tests need: promtool (Debian's prometheus package) to check
# /metrics, Debian's chromium for the dashboard, and the official openai
# Python client and Playwright (its driver only: it runs Debian's chromium)
# in a cached venv.
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium fonts-dejavu-core)
if ((${#missing[@]})); then
  echo "netmoe: installing ${missing[*]} (for the metrics and dashboard tests)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
NETMOE_TEST_VENV="$HOME/.cache/netmoe/venv-test"
if ! "$NETMOE_TEST_VENV/bin/python" -c "import openai, playwright" 2>/dev/null; then
  echo "netmoe: making $NETMOE_TEST_VENV with the openai client and Playwright" >&2
  python3 -m venv "$NETMOE_TEST_VENV"
  "$NETMOE_TEST_VENV/bin/pip" install -q "openai==1.109.1" "playwright==1.65.2"
fi
NETMOE_TEST_MODEL="$NETMOE_MODEL_PATH" NETMOE_TEST_INSTRUCT_MODEL="$NETMOE_INSTRUCT_MODEL_PATH" cargo test --release --workspace -- --test-threads=1 "$@"
