#!/usr/bin/env bash
# Sets up nftshim on this machine (packages, release build), starts nftshimd, and loads
# examples/example.nft through the unmodified nft, inside a scratch network namespace so
# that the host's own firewall is not touched. Leaves the daemon running; prints how to
# talk to it and how to stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

BIN="$PWD/target/release"
RUN="${NFTSHIM_RUN_DIR:-/run/nftshim-demo}"
SOCK="$RUN/nftshim.sock"
NS="${NFTSHIM_DEMO_NETNS:-nftshim-demo}"
mkdir -p "$RUN"

if [ -f "$RUN/nftshimd.pid" ] && kill -0 "$(cat "$RUN/nftshimd.pid")" 2>/dev/null; then
    echo "demo: nftshimd already running (pid $(cat "$RUN/nftshimd.pid"))"
else
    "$BIN/nftshimd" --socket "$SOCK" --state-dir "$RUN/state" --dataplane "${NFTSHIM_DATAPLANE:-none}" \
        >"$RUN/nftshimd.log" 2>&1 &
    echo $! >"$RUN/nftshimd.pid"
    for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
    [ -S "$SOCK" ] || { cat "$RUN/nftshimd.log"; exit 1; }
    echo "demo: nftshimd started (pid $(cat "$RUN/nftshimd.pid")), log $RUN/nftshimd.log"
fi

ip netns list | grep -qx "$NS" || ip netns add "$NS"
ip netns exec "$NS" "$BIN/nftshim" exec --socket "$SOCK" -- nft -f examples/example.nft
echo "demo: ruleset of namespace $NS as nftshimd holds it:"
ip netns exec "$NS" "$BIN/nftshim" exec --socket "$SOCK" -- nft list ruleset
"$BIN/nftshim" status --socket "$SOCK"
cat <<MSG

Try:   ip netns exec $NS $BIN/nftshim exec --socket $SOCK -- nft -a list ruleset
Stop:  kill \$(cat $RUN/nftshimd.pid); ip netns del $NS
MSG
