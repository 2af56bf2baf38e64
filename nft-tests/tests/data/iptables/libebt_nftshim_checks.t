# ebtables extensions through nft_compat.
:INPUT,FORWARD,OUTPUT
-p IPv4 --ip-proto tcp --ip-dport 22:80 -j DROP;=;OK
-p IPv4 --ip-dport 22;;FAIL
-p IPv6 --ip6-proto udp --ip6-sport 53;=;OK
-p ARP --arp-op Request;=;OK
--arp-op Request;;FAIL
-p 802_1Q --vlan-id 10;=;OK
--vlan-id 10;;FAIL
--mark 0x10/0xff;=;OK
--pkttype-type multicast;=;OK
--802_3-sap 0x42;=;OK
--log-level info --log-prefix x --log-ip;=;OK
--nflog-group 2;=;OK
-j mark --mark-set 1 --mark-target ACCEPT;=;OK
*nat
:PREROUTING
-p IPv4 -j dnat --to-dst 00:11:22:33:44:55;=;OK
-j redirect;=;OK
:POSTROUTING
-j snat --to-src 00:11:22:33:44:55;=;OK
-j dnat --to-dst 00:11:22:33:44:55;;FAIL
-p ARP -j arpreply --arpreply-mac 00:11:22:33:44:55;;FAIL
