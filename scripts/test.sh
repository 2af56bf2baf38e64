#!/usr/bin/env bash
# Runs every test: unit, integration (real nft, namespaces, daemon started by the
# tests) and the nft-py conformance suite, kernel against nftshimd.
# Needs root (network namespaces) and the packages scripts/setup.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
export NFTSHIM_BIN_DIR="$PWD/target/release"
SHARED="${NFTSHIM_SHARED:-$(cd .. && pwd)/shared}"

scripts/setup.sh

echo "== unit and integration tests"
cargo test --release --workspace --locked 2>&1

mkdir -p target/conformance
echo "== iptables conformance (dataplane none)"
"$NFTSHIM_BIN_DIR/nft-conformance" --suite iptables --dataplane none --jobs 2 \
    --report target/conformance/iptables.md --min-pass-rate 90 \
    "$SHARED/conformance/iptables"

echo "== iptables conformance (eBPF data plane: every case agrees or is a deliberate refusal)"
"$NFTSHIM_BIN_DIR/nft-conformance" --suite iptables --dataplane ebpf --jobs 2 \
    --report target/conformance/iptables-ebpf.md --min-pass-rate 90 --max-failed 0 \
    "$SHARED/conformance/iptables"

echo "== nft-py conformance (dataplane none)"
"$NFTSHIM_BIN_DIR/nft-conformance" --suite nft-py --dataplane none --jobs 2 \
    --report target/conformance/nft-py.md --min-pass-rate 97 \
    "$SHARED/conformance/nft-py"

echo "== nft-py conformance (eBPF data plane: every case agrees or is a deliberate refusal)"
"$NFTSHIM_BIN_DIR/nft-conformance" --suite nft-py --dataplane ebpf --jobs 2 \
    --report target/conformance/nft-py-ebpf.md --min-pass-rate 90 --max-failed 0 \
    "$SHARED/conformance/nft-py"

echo "== benchmark smoke test (quick mode: N <= 1,000; asserts nothing about timings)"
"$NFTSHIM_BIN_DIR/nftshim-bench" --quick --out-dir target/bench
