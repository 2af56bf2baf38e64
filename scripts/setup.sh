#!/usr/bin/env bash
# Installs what nftshim needs on a fresh Debian machine and builds it.
# Used by README's first command and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(nftables iptables iproute2 util-linux clang llvm libbpf-dev bpftool netsniff-ng tcpdump build-essential pkg-config)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

cargo build --release --workspace --locked 2>&1 | tail -n 3
