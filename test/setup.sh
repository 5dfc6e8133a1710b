#!/usr/bin/env bash
# Makes a fresh Debian 12 machine with Node 20 ready for the demo and the
# tests: the kernel tools they drive, then the npm packages. Idempotent and
# quiet when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "clusterset-proxy: the demo and the data-plane tests need root (network namespaces, iptables)" >&2
  exit 1
fi

missing=()
# user-mode-linux boots a 6.1 kernel with ip_vs for the IPVS tests (this machine's
# kernel has no IP_VS); its modules load with kmod's modprobe; ipvsadm reads IPVS back.
# ipset holds the frontends the iptables-mode jumps match.
for tool in iptables-nft-restore:iptables iptables-legacy-restore:iptables ipset:ipset ip:iproute2 conntrack:conntrack sysctl:procps \
  linux.uml:user-mode-linux modprobe:kmod ipvsadm:ipvsadm nft:nftables; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
# The nftables addon builds at `npm ci` against libnftnl and libmnl.
for header in libnftnl/set.h:libnftnl-dev libmnl/libmnl.h:libmnl-dev; do
  [ -e "/usr/include/${header%%:*}" ] || missing+=("${header##*:}")
done
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

if [ ! -d node_modules/@kubernetes/client-node ] || [ package-lock.json -nt node_modules/.package-lock.json ] \
  || [ ! -e native/nftables/build/Release/nftables_batch.node ]; then
  npm ci --no-fund --no-audit --loglevel=error
fi
