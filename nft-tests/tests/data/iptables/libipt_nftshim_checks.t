# IPv4-only kernel checks, and hook checks reached through jumps at commit.
%iptables -N MACCHAIN
%iptables -A MACCHAIN -m mac --mac-source 00:11:22:33:44:55
:OUTPUT
-j MACCHAIN;;FAIL
:INPUT
-j MACCHAIN;=;OK
%iptables -t nat -N DNATCHAIN
%iptables -t nat -A DNATCHAIN -p tcp -j DNAT --to-destination 1.2.3.4:80
*nat
:PREROUTING,OUTPUT
-j DNATCHAIN;=;OK
-p tcp -j DNAT --to-destination 1.2.3.4:80;=;OK
-p tcp -j DNAT --to-destination 1.2.3.4-1.2.3.9:80-90;=;OK
-p tcp -j NETMAP --to 10.0.0.0/8;=;OK
:POSTROUTING,INPUT
-j DNATCHAIN;;FAIL
-j SNAT --to-source 1.2.3.4;=;OK
-p udp -j SNAT --to-source 1.2.3.4:1000-2000 --random;=;OK
*filter
:INPUT
-p icmp -m icmp --icmp-type echo-request;=;OK
-p tcp -m icmp --icmp-type echo-request;;FAIL
-p tcp -j REJECT --reject-with tcp-reset;=;OK
! -p tcp -j REJECT --reject-with tcp-reset;;FAIL
-p tcp -m tcp --dport 22 -m conntrack --ctstate NEW,ESTABLISHED -m comment --comment ssh -j ACCEPT;=;OK
-m state --state RELATED,ESTABLISHED -j ACCEPT;=;OK
-m iprange --src-range 1.2.3.4-1.2.3.9;=;OK
-m pkttype --pkt-type broadcast;=;OK
-m length --length 100:200;=;OK
-m tos --tos 0x10;=;OK
-m dscp --dscp 10;=;OK
-m mark --mark 0x1/0xff;=;OK
-m connmark --mark 2;=;OK
-m limit --limit 5/min --limit-burst 10;=;OK
-p udp -m multiport --sports 53,123;=;OK
! -p udp -m multiport --sports 53,123;;FAIL
-p udp -m udp --sport 53;=;OK
-j REJECT --reject-with icmp-host-prohibited;=;OK
-j ULOG;;FAIL
*mangle
:POSTROUTING
-j ECN --ecn-tcp-remove;;FAIL
! -p tcp -j ECN --ecn-tcp-remove;;FAIL
-p udp -j ECN --ecn-tcp-cwr 1;;FAIL
-p tcp -j ECN --ecn-tcp-cwr 1 --ecn-ip-ect 1;=;OK
