#!/usr/bin/env bash
# Installs a release build of nftshim into the system (run from the workspace root after
# `cargo build --release`). PREFIX defaults to /usr.
set -euo pipefail
PREFIX="${PREFIX:-/usr}"
DESTDIR="${DESTDIR:-}"
BIN="${BIN_DIR:-target/release}"
install -Dm755 "$BIN/nftshimd" "$DESTDIR$PREFIX/sbin/nftshimd"
install -Dm755 "$BIN/nftshim" "$DESTDIR$PREFIX/bin/nftshim"
install -Dm644 "$BIN/libnftshim_preload.so" "$DESTDIR$PREFIX/lib/nftshim/libnftshim_preload.so"
install -Dm644 packaging/systemd/nftshimd.service "$DESTDIR/lib/systemd/system/nftshimd.service"
install -Dm644 README.md "$DESTDIR$PREFIX/share/doc/nftshim/README.md"
echo "installed nftshim under ${DESTDIR:-/}$PREFIX"
