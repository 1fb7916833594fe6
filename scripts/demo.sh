#!/usr/bin/env bash
# A two-minute tour of the WireGuard engine: wiremesh-wg and the real
# wireguard-go in two network namespaces, managed by stock wg(8), then the
# throughput benchmark against wireguard-go and plain veth. Cleans up on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
A=wmdemoA$$; B=wmdemoB$$; IA=wmd$$a; IB=wmd$$b
cleanup() {
  for ns in $A $B; do ip netns pids $ns 2>/dev/null | xargs -r kill 2>/dev/null || true; ip netns del $ns 2>/dev/null || true; done
  rm -f /var/run/wireguard/$IA.sock /var/run/wireguard/$IB.sock /dev/shm/$IA.key /dev/shm/$IB.key
}
trap cleanup EXIT
ip netns add $A; ip netns add $B
ip link add va$$ netns $A type veth peer name vb$$ netns $B
ip -n $A addr add 198.18.9.1/24 dev va$$; ip -n $B addr add 198.18.9.2/24 dev vb$$
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set va$$ up; ip -n $B link set vb$$ up
echo "# wiremesh-wg $IA in $A, wireguard-go $IB in $B"
ip netns exec $A node bin/wiremesh-wg.js $IA
ip netns exec $B env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wireguard-go $IB >/dev/null 2>&1
umask 077
wg genkey > /dev/shm/$IA.key; wg genkey > /dev/shm/$IB.key
ip netns exec $A wg set $IA private-key /dev/shm/$IA.key listen-port 51820 peer "$(wg pubkey < /dev/shm/$IB.key)" endpoint 198.18.9.2:51820 allowed-ips 100.64.99.2/32
ip netns exec $B wg set $IB private-key /dev/shm/$IB.key listen-port 51820 peer "$(wg pubkey < /dev/shm/$IA.key)" endpoint 198.18.9.1:51820 allowed-ips 100.64.99.1/32
ip -n $A addr add 100.64.99.1/24 dev $IA; ip -n $A link set $IA up
ip -n $B addr add 100.64.99.2/24 dev $IB; ip -n $B link set $IB up
echo "# ping through the tunnel (wiremesh initiates the handshake)"
ip netns exec $A ping -c 3 -i 0.3 100.64.99.2
echo "# wg show on the wiremesh side"
ip netns exec $A wg show $IA
cleanup; trap - EXIT
echo
echo "# throughput benchmark (same run: wiremesh, wireguard-go, veth)"
BENCH_SECONDS=${BENCH_SECONDS:-5} node dist/bench/throughput.js
