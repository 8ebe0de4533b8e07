#!/bin/sh
# The compose cluster's init step (runs once, as root, in the coordinator
# image): a fresh CA and state in the `state` volume, one join token per
# node, a client certificate and an API key for the `client` service; then
# hands the volumes to the image's user (uid 10001). Nothing of it is ever
# checked in.
set -eu
if [ -f /state/ca.pem ]; then
  echo "init: the cluster already has a CA; nothing to do"
  exit 0
fi
coordinator ca init /state --name coordinator
for node in $NETMOE_NODES; do
  coordinator token create --dir /state --ttl 1h --description "compose node $node" > "/tokens/$node"
done
coordinator ca issue --dir /state --client compose-client --out /client
coordinator key create --dir /state --name compose-client > /client/api-key
chmod 600 /client/api-key /tokens/*
chown -R 10001:10001 /state /tokens /client /tls-*
echo "init: CA, $(echo $NETMOE_NODES | wc -w) join tokens, a client certificate and an API key made"
