# IPv6-only kernel checks.
:INPUT
-p ipv6-icmp -m icmp6 --icmpv6-type echo-request;=;OK
-p tcp -m icmp6 --icmpv6-type echo-request;;FAIL
-p tcp -j REJECT --reject-with tcp-reset;=;OK
-j REJECT --reject-with icmp6-adm-prohibited;=;OK
-m addrtype --dst-type BLACKHOLE;;FAIL
-m addrtype --dst-type LOCAL;=;OK
-m hbh --hbh-len 8;=;OK
-m frag --fragid 100;=;OK
*nat
:POSTROUTING
-j MASQUERADE;=;OK
-j SNAT --to-source dead::1;=;OK
:PREROUTING
-p tcp -j DNAT --to-destination [dead::1]:80;=;OK
-p tcp -j REDIRECT --to-ports 80;=;OK
*mangle
:PREROUTING
-j HL --hl-set 64;=;OK
-j SNPT --src-pfx dead::/64 --dst-pfx 1c3::/64;;FAIL
:POSTROUTING
-j SNPT --src-pfx dead::/64 --dst-pfx 1c3::/64;=;OK
-j SNPT --src-pfx dead::1/64 --dst-pfx 1c3::/64;;FAIL
