#!/usr/bin/env bash
# Installs a NetMoE edge node on a board and joins it to a cluster.
#   sudo ./deploy/boards/install.sh --coordinator https://10.0.0.2:50050 \
#        --token ID.SECRET.CA_SHA256 --node-id pi-kitchen --profile nature \
#        [--model smollm2-135m-instruct] [--threads 4] [--cuda]
# Builds on the board for its own CPU (-C target-cpu=native; --cuda on a
# Jetson forwards the `cuda` feature to llama-cpp-2), installs the binary,
# a `netmoe` user, /etc/netmoe/edge-node.env and the hardened systemd unit,
# fetches the model, joins with the one-time token (the key is made on the
# board and never leaves it), and starts the service.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
coordinator="" token="" node_id="" profile="" model="" threads="" cuda=0
while (($#)); do
  case "$1" in
    --coordinator) coordinator="$2"; shift 2 ;;
    --token) token="$2"; shift 2 ;;
    --node-id) node_id="$2"; shift 2 ;;
    --profile) profile="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --cuda) cuda=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$coordinator" ] && [ -n "$token" ] && [ -n "$node_id" ] || {
  echo "usage: install.sh --coordinator URL --token T --node-id ID [--profile P] [--model M] [--threads N] [--cuda]" >&2
  exit 2
}
[ "$(id -u)" -eq 0 ] || { echo "run as root (sudo)" >&2; exit 1; }

echo "netmoe: packages" >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake libclang-dev python3-pip build-essential >/dev/null
command -v cargo >/dev/null || { echo "netmoe: install Rust first (https://rustup.rs), then run again" >&2; exit 1; }

features=()
((cuda)) && features=(--features cuda)
echo "netmoe: building edge-node for this board's CPU (first build: 20-40 min on a Pi 4)" >&2
(cd "$ROOT" && RUSTFLAGS="-C target-cpu=native" cargo build --release -p netmoe-edge-node --bin edge-node "${features[@]}")
install -m 0755 "${CARGO_TARGET_DIR:-$ROOT/target}/release/edge-node" /usr/local/bin/edge-node

id netmoe >/dev/null 2>&1 || useradd --system --home-dir /var/lib/netmoe --shell /usr/sbin/nologin netmoe
install -d -o netmoe -g netmoe -m 0700 /var/lib/netmoe /var/lib/netmoe/tls /var/lib/netmoe/cache
install -d -m 0755 /etc/netmoe
if [ ! -f /etc/netmoe/edge-node.env ]; then
  {
    echo "NETMOE_NODE_ID=$node_id"
    echo "NETMOE_COORDINATOR=$coordinator"
    echo "NETMOE_LISTEN=0.0.0.0:50051"
    echo "NETMOE_ADVERTISE=https://$(hostname -I | awk '{print $1}'):50051"
    [ -n "$profile" ] && echo "NETMOE_PROFILE=$profile"
    [ -n "$model" ] && echo "NETMOE_MODEL=$model"
    [ -n "$threads" ] && echo "NETMOE_THREADS=$threads"
    echo "NETMOE_SNR=rayleigh:15"
  } > /etc/netmoe/edge-node.env
  chmod 0644 /etc/netmoe/edge-node.env
fi

echo "netmoe: fetching the model" >&2
sudo -u netmoe env NETMOE_CACHE_DIR=/var/lib/netmoe/cache /usr/local/bin/edge-node fetch-model "${model:-default}" >/dev/null
echo "netmoe: joining the cluster at $coordinator as $node_id" >&2
sudo -u netmoe /usr/local/bin/edge-node join --coordinator "$coordinator" --token "$token" \
  --node-id "$node_id" --tls-dir /var/lib/netmoe/tls

install -m 0644 "$ROOT/deploy/boards/netmoe-edge-node.service" /etc/systemd/system/netmoe-edge-node.service
systemctl daemon-reload
systemctl enable --now netmoe-edge-node
echo "netmoe: running; logs: journalctl -u netmoe-edge-node -f" >&2
