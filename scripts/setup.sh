#!/usr/bin/env bash
# Installs the system packages wiremesh needs (scripts/system-packages.txt) on
# Debian 12. README's commands use it; .ci/run does the same two steps itself.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -ne 0 ]; then echo "setup.sh: run as root (it uses apt-get and network namespaces)" >&2; exit 1; fi
cd "$(dirname "$0")/.."
apt-get update -qq
apt-get install -y -qq --no-install-recommends $(grep -v '^#' scripts/system-packages.txt) >/dev/null
echo "setup: system packages installed"
