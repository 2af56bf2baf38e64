#!/usr/bin/env bash
# Builds target/nftshim_<version>_<arch>.deb from a release build, with dpkg-deb only.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
DESTDIR="$root" PREFIX=/usr packaging/install.sh >/dev/null
mkdir -p "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CONTROL
Package: nftshim
Version: $version
Architecture: $arch
Maintainer: nftshim developers <nftshim@localhost>
Depends: libc6, nftables
Recommends: iptables
Section: net
Priority: optional
Description: nf_tables netlink served in userspace and enforced by eBPF
 nftshimd speaks the kernel's side of the nf_tables netlink protocol so that
 unmodified nft and iptables-nft drive it through an LD_PRELOAD interposer.
CONTROL
dpkg-deb --build --root-owner-group "$root" "target/nftshim_${version}_${arch}.deb"
