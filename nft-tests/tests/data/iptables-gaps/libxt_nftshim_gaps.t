# Cases where nftshimd's xtables checks (shim/engine/src/xt.rs) still differ from the
# kernel's checkentry. Not run by the tests; see them with:
#   nft-conformance --suite iptables nft-tests/tests/data/iptables-gaps
# Move a line back to ../iptables/libxt_nftshim_checks.t once it agrees.
:INPUT
-m addrtype --limit-iface-out --src-type LOCAL;;FAIL
-m policy --dir out --pol none;;FAIL
-m devgroup --dst-group 1;;FAIL
-m hashlimit --hashlimit-upto 10/sec --hashlimit-name ..;;FAIL
-m hashlimit --hashlimit-upto 5/sec --hashlimit-name big --hashlimit-htable-size 2000000 --hashlimit-htable-max 3000000;-m hashlimit --hashlimit-upto 5/sec --hashlimit-burst 5 --hashlimit-name big --hashlimit-htable-size 1048576 --hashlimit-htable-max 1048576;OK
-m recent --rcheck --hitcount 65536 --name foo;;FAIL
-m ecn --ecn-tcp-cwr;;FAIL
:OUTPUT
-m cgroup --path /init.scope;;FAIL
-m cgroup --path /nosuch;;FAIL
:PREROUTING
-p udp -j CT --helper ftp;;FAIL
-j CT --helper ftp;;FAIL
-p tcp -j CT --helper nosuch;;FAIL
-p tcp -j CT --timeout foo;;FAIL
-j CT --timeout foo;;FAIL
