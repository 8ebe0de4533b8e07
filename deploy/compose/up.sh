#!/usr/bin/env bash
# Builds the images (no registry needed), starts the secured compose
# cluster (a coordinator and three edge experts, each its own container),
# waits until every node has joined and is live, then answers the prompt
# (or a default one) through the coordinator and prints the story and the
# cost tables. The cluster keeps running; ./deploy/compose/down.sh removes it.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# NETMOE_NO_BUILD=1 runs the images already tagged NETMOE_IMAGE_TAG (e.g.
# the from-source ones: NETMOE_IMAGE_TAG=src after build-from-source.sh).
[ -n "${NETMOE_NO_BUILD:-}" ] || "$HERE/../docker/build-images.sh"
export NETMOE_MODELS="${NETMOE_MODELS:-$HOME/.cache/netmoe/models}"
# NETMOE_COMPOSE_EXTRA: an overlay, e.g. deploy/compose/docker-compose.shaped.yml.
extra=()
[ -n "${NETMOE_COMPOSE_EXTRA:-}" ] && extra=(-f "$NETMOE_COMPOSE_EXTRA")
compose() { docker-compose -f "$HERE/docker-compose.yml" "${extra[@]}" -p "${NETMOE_PROJECT:-netmoe}" "$@"; }
started=$(date +%s)
echo "netmoe: starting the cluster (models from $NETMOE_MODELS, read-only)" >&2
compose up -d >&2
for _ in $(seq 1 300); do
  live=$(compose run --rm -T client nodes 2>/dev/null | grep -c ' yes ' || true)
  [ "$live" -ge 3 ] && break
  sleep 1
done
[ "${live:-0}" -ge 3 ] || { compose ps >&2; compose logs --tail 30 >&2; echo "netmoe: the nodes did not all join" >&2; exit 1; }
echo "netmoe: 3 nodes live after $(( $(date +%s) - started )) s; asking" >&2
prompt="${1:-Write a story in which a young knight rides out to face a dragon, a robot scientist repairs a starship far from Earth, and a family of otters survives the first winter storm.}"
shift || true
compose run --rm -T client run "$prompt" --max-tokens 48 "$@"
echo "netmoe: answered $(( $(date +%s) - started )) s after \`up\`; the cluster keeps running (./deploy/compose/down.sh)" >&2
