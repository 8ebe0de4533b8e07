#!/usr/bin/env bash
# The test command: installs what is missing, builds, fetches the model,
# then runs every unit, doc and integration test (real processes, real
# sockets, the real model). Integration tests run one at a time: each starts
# its own llama.cpp processes, and the machine has few cores.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$NETMOE_ROOT"
NETMOE_TEST_MODEL="$NETMOE_MODEL_PATH" NETMOE_TEST_INSTRUCT_MODEL="$NETMOE_INSTRUCT_MODEL_PATH" cargo test --release --workspace -- --test-threads=1 "$@"
