#!/bin/sh
# One-shot: records both clusters in their etcd (and sets up RBAC), issues
# each node its own etcd credentials (pki/<cluster>/nodes/<node>/), connects
# the clusters (kvstoremesh then mirrors each into the other) and applies the
# demo's global service and policy to both. All with CN=root, the operator's
# certificate. Retries while etcd starts.
set -eu
while [ ! -f /pki/ready ]; do sleep 0.2; done
E1=https://198.18.100.2:2379
E2=https://198.18.100.3:2379
root() { echo "--$1etcd-ca /pki/$2/ca.crt --$1etcd-cert /pki/$2/root.crt --$1etcd-key /pki/$2/root.key"; }
retry() { for i in $(seq 1 60); do "$@" && return 0; sleep 1; done; return 1; }
retry wiremesh clustermesh enable --cluster c1 --id 1 --pod-cidr 100.65.0.0/16 --underlay-cidrs 198.18.100.8/29 --etcd $E1 $(root '' c1)
retry wiremesh clustermesh enable --cluster c2 --id 2 --pod-cidr 100.66.0.0/16 --underlay-cidrs 198.18.100.16/28 --etcd $E2 $(root '' c2)
for n in n1 n2; do
  wiremesh clustermesh node-credentials --cluster c1 --node $n --dir /pki/c1 --out /pki/c1/nodes/$n --etcd $E1 $(root '' c1)
  wiremesh clustermesh node-credentials --cluster c2 --node $n --dir /pki/c2 --out /pki/c2/nodes/$n --etcd $E2 $(root '' c2)
done
retry wiremesh clustermesh connect --a-etcd $E1 $(root a- c1) --a-pki /pki/c1 --b-etcd $E2 $(root b- c2) --b-pki /pki/c2
wiremesh apply --cluster c1 --etcd $E1 $(root '' c1) -f /opt/wiremesh/examples/demo/api.yaml
wiremesh apply --cluster c2 --etcd $E2 $(root '' c2) -f /opt/wiremesh/examples/demo/api.yaml
echo "mesh set up"
