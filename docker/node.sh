#!/bin/sh
# A node container: writes node.yaml from the environment, starts the agent,
# then adds its pods (network namespaces inside this container, `wiremesh pod
# add`), each running a tiny TCP server on 8080 that answers with its name.
#   CLUSTER CLUSTER_ID NODE ADDRESS POD_CIDR ETCD   PODS="name:app:ip ..."
set -eu
mkdir -p /var/lib/wiremesh /run/wiremesh
# this node's own etcd credentials (docker/setup.sh): ca.crt is the last file written
CRED=/pki/$CLUSTER/nodes/$NODE
until [ -s $CRED/ca.crt ] && openssl x509 -noout -in $CRED/ca.crt 2>/dev/null; do sleep 0.2; done
cat > /etc/wiremesh-node.yaml <<YAML
cluster: { name: $CLUSTER, id: $CLUSTER_ID }
node: { name: $NODE, addresses: [$ADDRESS], podCIDRs: [$POD_CIDR] }
wireguard: { interface: wm0, port: 51820, privateKeyFile: /var/lib/wiremesh/key }
etcd: { endpoints: [$ETCD], caFile: $CRED/ca.crt, certFile: $CRED/node.crt, keyFile: $CRED/node.key }
api: { socket: /run/wiremesh/agent.sock }
metrics: { address: $ADDRESS, port: 9962 }
YAML
# as README's "Running the agent" (1 MiB semi-spaces: V8's young generation otherwise stays at 32 MiB after a sync;
# two malloc arenas: glibc's default of up to 8 per core holds more free pages; docs/benchmarks.md, s32 and s33)
MALLOC_ARENA_MAX=2 node --max-semi-space-size=1 "$(command -v wiremesh)" agent --config /etc/wiremesh-node.yaml &
agent=$!
trap 'kill -TERM $agent; wait $agent' TERM INT
while [ ! -S /run/wiremesh/agent.sock ]; do
  kill -0 $agent 2>/dev/null || exit 1
  sleep 0.2
done
for p in ${PODS:-}; do
  name=${p%%:*}; rest=${p#*:}; app=${rest%%:*}; ip=${rest#*:}
  wiremesh pod add "$name" --ip "$ip" --namespace shop --labels "app=$app"
  ip netns exec "pod-$name" node /opt/wiremesh/dist/src/chaos/probe.js server "$name" 8080 &
done
echo "node $CLUSTER/$NODE ready"
wait $agent
