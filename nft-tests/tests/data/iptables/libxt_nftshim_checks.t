# Kernel checks (xt_check_match/xt_check_target and checkentry) that the upstream
# corpus does not reach; the kernel decides what is right.
:INPUT
-m u32 --u32 "0>>32=0";;FAIL
-m u32 --u32 "0<<32=0";;FAIL
-m u32 --u32 "0x0<<0x1f=0x0";=;OK
-m u32 --u32 "0x0&0xffffffff@0x20=0x0";=;OK
-j REJECT;=;OK
-p tcp -j TCPMSS --clamp-mss-to-pmtu;;FAIL
-j TCPMSS --set-mss 100;;FAIL
-p tcp -j TCPMSS --set-mss 100;=;OK
-m owner --uid-owner 0;;FAIL
-m addrtype --limit-iface-in --src-type LOCAL;=;OK
-m policy --dir in --pol none;=;OK
-m devgroup --src-group 1;=;OK
-m hashlimit --hashlimit-upto 10/sec --hashlimit-name a.b;=;OK
-m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 5 --hashlimit-mode srcip --hashlimit-name hl1;=;OK
-m recent --rcheck --hitcount 65535 --name foo;=;OK
-m recent --name ..;;FAIL
-m connlabel --label 127;=;OK
-m string --algo fsm --string x;;FAIL
-m time --timestart 10:00 --timestop 11:00;=;OK
-p tcp -m ecn --ecn-tcp-cwr;=;OK
-p tcp -j SYNPROXY --mss 1460;=;OK
-j SYNPROXY --mss 1460;;FAIL
-j NFQUEUE --queue-balance 65530:65535;=;OK
-j NFQUEUE --queue-num 3;=;OK
-j AUDIT --type accept;=;OK
-j LOG --log-prefix abc --log-level 7;=;OK
-j NFLOG --nflog-group 3 --nflog-prefix x;=;OK
-j MARK --set-xmark 0x1/0xff;=;OK
-j CONNMARK --set-mark 1;=;OK
-j CLASSIFY --set-class 1:1;;FAIL
:OUTPUT
-m mac --mac-source 00:11:22:33:44:55;;FAIL
-p tcp -j TCPMSS --clamp-mss-to-pmtu;=;OK
-m owner --uid-owner 0;=;OK
-m cgroup --path /;=;OK
-j CLASSIFY --set-class 1:1;=;OK
:FORWARD
-m physdev --physdev-out eth0;;FAIL
-m physdev --physdev-is-bridged --physdev-out eth0;=;OK
-m socket;;FAIL
*raw
:PREROUTING
-p tcp -j CT --helper ftp;=;OK
-p udp -j CT --helper sip;=;OK
-j NOTRACK;=;OK
-j TRACE;=;OK
-m rpfilter;=;OK
-m socket;=;OK
-j CHECKSUM --checksum-fill;;FAIL
*mangle
:PREROUTING
-j REJECT;;FAIL
-j CHECKSUM --checksum-fill;=;OK
-j DSCP --set-dscp 10;=;OK
-j TOS --set-tos 0x10;=;OK
-p tcp -j TPROXY --on-port 1 --tproxy-mark 1;=;OK
-j TPROXY --on-port 1 --tproxy-mark 1;;FAIL
-j CONNSECMARK --save;=;OK
-j NOTRACK;;FAIL
*nat
:POSTROUTING
-j MASQUERADE;=;OK
-j MASQUERADE --to-ports 1000-2000;;FAIL
-p tcp -j MASQUERADE --to-ports 1000-2000;=;OK
:PREROUTING
-j MASQUERADE;;FAIL
-p tcp -j REDIRECT --to-ports 8080;=;OK
-j RETURN;=;OK
*filter
:INPUT
-m addrtype --limit-iface-out --src-type LOCAL;;FAIL
-m policy --dir out --pol none;;FAIL
-m devgroup --dst-group 1;;FAIL
-m hashlimit --hashlimit-upto 10/sec --hashlimit-name ..;;FAIL
-m hashlimit --hashlimit-upto 10/sec --hashlimit-name .;;FAIL
-m hashlimit --hashlimit-upto 10/sec --hashlimit-name a/b;;FAIL
-m hashlimit --hashlimit-upto 5/sec --hashlimit-name big --hashlimit-htable-size 2000000 --hashlimit-htable-max 3000000;-m hashlimit --hashlimit-upto 5/sec --hashlimit-burst 5 --hashlimit-name big --hashlimit-htable-size 1048576 --hashlimit-htable-max 1048576;OK
-m recent --rcheck --hitcount 65536 --name foo;;FAIL
-m recent --rcheck --hitcount 65535 --name foo;-m recent --rcheck --hitcount 65535 --name foo --mask 255.255.255.255 --rsource;OK
-m recent --set --name a/b;;FAIL
-m recent --set --name ..;;FAIL
-m ecn --ecn-tcp-cwr;;FAIL
-p udp -m ecn --ecn-tcp-ece;;FAIL
! -p tcp -m ecn --ecn-tcp-ece;;FAIL
-p udp -m ecn --ecn-ip-ect 1;=;OK
:OUTPUT
-m devgroup --src-group 1;;FAIL
:FORWARD
-m devgroup --src-group 1 --dst-group 2;-m devgroup --src-group 0x1 --dst-group 0x2;OK
*raw
:PREROUTING
-p udp -j CT --helper ftp;;FAIL
-j CT --helper ftp;;FAIL
-p tcp -j CT --helper nosuch;;FAIL
-p tcp -j CT --timeout foo;;FAIL
-j CT --timeout foo;;FAIL
