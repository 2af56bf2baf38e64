# Cases where nftshimd's xtables checks (shim/engine/src/xt.rs) still differ from the
# kernel's checkentry. Not run by the tests; see them with:
#   nft-conformance --suite iptables nft-tests/tests/data/iptables-gaps
# Move a line back to ../iptables/libxt_nftshim_checks.t once it agrees.
:OUTPUT
-m cgroup --path /init.scope;;FAIL
-m cgroup --path /nosuch;;FAIL
