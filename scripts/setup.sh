#!/usr/bin/env bash
# Installs the system packages wiremesh needs to build, test and benchmark
# (Debian 12). Used by the README's commands and by CI.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -ne 0 ]; then echo "setup.sh: run as root (it uses apt-get and network namespaces)" >&2; exit 1; fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  wireguard-go wireguard-tools iperf3 iproute2 iputils-ping nftables tcpdump procps kmod \
  etcd-server etcd-client openssl \
  clang-14 libclang-rt-14-dev libssl-dev python3 make g++ ca-certificates >/dev/null
echo "setup: system packages installed"
