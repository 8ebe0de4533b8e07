#!/usr/bin/env bash
# Stops the compose cluster and removes its containers, network and volumes
# (the CA, tokens and certificates with them; the models stay in the cache).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export NETMOE_MODELS="${NETMOE_MODELS:-$HOME/.cache/netmoe/models}"
extra=()
[ -n "${NETMOE_COMPOSE_EXTRA:-}" ] && extra=(-f "$NETMOE_COMPOSE_EXTRA")
docker-compose -f "$HERE/docker-compose.yml" "${extra[@]}" -p "${NETMOE_PROJECT:-netmoe}" --profile tools down -v --remove-orphans
