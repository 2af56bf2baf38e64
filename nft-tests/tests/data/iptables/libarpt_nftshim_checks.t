# arptables extensions through nft_compat.
:INPUT,OUTPUT
-j mangle --mangle-ip-s 1.2.3.4;=;OK
-j mangle --mangle-mac-d 00:11:22:33:44:55 --mangle-target ACCEPT;=;OK
-j CLASSIFY --set-class 1:1;;FAIL
:OUTPUT
-j MARK --set-mark 1;=;OK
-s 1.2.3.4 -j DROP;=;OK
