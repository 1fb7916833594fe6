#!/bin/sh
# One-shot: records both clusters in their etcd, connects them (kvstoremesh
# then mirrors each into the other) and applies the demo's global service and
# policy to both. Retries while etcd starts.
set -eu
E1=http://198.18.100.2:2379
E2=http://198.18.100.3:2379
retry() { for i in $(seq 1 60); do "$@" && return 0; sleep 1; done; return 1; }
retry wiremesh clustermesh enable --cluster c1 --id 1 --pod-cidr 100.65.0.0/16 --etcd $E1
retry wiremesh clustermesh enable --cluster c2 --id 2 --pod-cidr 100.66.0.0/16 --etcd $E2
retry wiremesh clustermesh connect --a-etcd $E1 --b-etcd $E2
wiremesh apply --cluster c1 --etcd $E1 -f /opt/wiremesh/examples/demo/api.yaml
wiremesh apply --cluster c2 --etcd $E2 -f /opt/wiremesh/examples/demo/api.yaml
echo "mesh set up"
