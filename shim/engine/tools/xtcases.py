#!/usr/bin/env python3
"""Records the kernel's answers to nft_compat (xtables `match`/`target`) edge cases.

Usage (as root): xtcases.py OUT.json   (same output format as capture.py / rawcases.py)
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rawcases  # noqa: E402
from rawcases import (ACK, APPEND, CREATE, REQ, attr, begin, end, msg, nest, nft, strz, u32)  # noqa: E402

DUMP = 0x300


def be64(kind, v):
    return attr(kind, struct.pack(">Q", v))


def xt(kind, name, rev, info, raw_name=None):
    nm = attr(1, raw_name) if raw_name is not None else strz(1, name)
    return nest(1, strz(1, kind), nest(2, nm, u32(2, rev), attr(3, info)))


def compat(proto, flags=0, only=None):
    parts = []
    if only != "flags":
        parts.append(u32(1, proto))
    if only != "proto":
        parts.append(u32(2, flags))
    return nest(5, *parts)


def rule(seq, table, chain, exprs, comp=b"", family=2, flags=REQ | CREATE | APPEND):
    return msg(nft(6), flags, seq, family, attrs=strz(1, table) + strz(2, chain) + nest(4, *exprs) + comp)


def jump(to):
    verdict = nest(2, nest(2, u32(1, 0xfffffffd), strz(2, to)))
    return nest(1, strz(1, "immediate"), nest(2, u32(1, 0), verdict))


def table(seq, name, family=2):
    return msg(nft(0), REQ, seq, family, attrs=strz(1, name))


def chain(seq, table, name, hook=None, prio=0, ctype="filter", family=2, dev=None):
    a = strz(1, table) + strz(3, name)
    if hook is not None:
        h = [u32(1, hook), u32(2, prio & 0xffffffff)]
        if dev:
            h.append(strz(3, dev))
        a += nest(4, *h) + strz(7, ctype)
    return msg(nft(3), REQ | CREATE, seq, family, attrs=a)


def one(*msgs):
    """One batch, sequence numbers from 1."""
    return [begin(0) + b"".join(m(i + 1) for i, m in enumerate(msgs)) + end(len(msgs) + 1)]


def R(table_, chain_, exprs, comp=b"", family=2):
    return lambda seq: rule(seq, table_, chain_, exprs, comp, family)


def z(n):
    return b"\0" * n


def rev_info(with_):
    return struct.pack("=I", with_) + z(4)


def log_info(level=4, prefix=b""):
    return bytes([level, 0]) + prefix.ljust(30, b"\0")[:30]


def limit_info(avg, burst, prev=0):
    return struct.pack("=IIQ", avg, burst, prev) + z(24)


def string_info(algo, pattern, flags=0, frm=0, to=65535):
    b = struct.pack("=HH", frm, to) + algo.ljust(16, b"\0") + pattern.ljust(128, b"\0")
    b += bytes([len(pattern), flags]) + z(2) + z(8)
    return b


def vlan_info(vid, prio, bitmask):
    return struct.pack("=HBxHBB", vid, prio, 0, bitmask, 0)


def cases():
    setup = one(lambda s: table(s, "filter"),
                lambda s: chain(s, "filter", "INPUT", 1),
                lambda s: chain(s, "filter", "PREROUTING", 0),
                lambda s: chain(s, "filter", "c"),
                lambda s: table(s, "nat"),
                lambda s: chain(s, "nat", "POSTROUTING", 4, 100, "nat"),
                lambda s: chain(s, "nat", "PREROUTING", 0, -100, "nat"),
                lambda s: chain(s, "nat", "n"),
                lambda s: table(s, "filter", 7),
                lambda s: chain(s, "filter", "INPUT", 1, family=7),
                lambda s: table(s, "filter", 3),
                lambda s: chain(s, "filter", "INPUT", 0, family=3),
                lambda s: table(s, "x", 1),
                lambda s: chain(s, "x", "in", 1, family=1))
    F = ("filter", "INPUT")
    return [
        ("setup", setup),
        ("REJECT", one(R(*F, [xt("target", "REJECT", 0, rev_info(0))]))),
        ("REJECT info too long", one(R(*F, [xt("target", "REJECT", 0, z(16))]))),
        ("REJECT info too short", one(R(*F, [xt("target", "REJECT", 0, z(4))]))),
        ("REJECT info unaligned", one(R(*F, [xt("target", "REJECT", 0, z(6))]))),
        ("REJECT tcp-reset without protocol", one(R(*F, [xt("target", "REJECT", 0, rev_info(7))]))),
        ("REJECT tcp-reset with tcp", one(R(*F, [xt("target", "REJECT", 0, rev_info(7))], compat(6)))),
        ("REJECT tcp-reset with ! tcp", one(R(*F, [xt("target", "REJECT", 0, rev_info(7))], compat(6, 2)))),
        ("REJECT echo-reply", one(R(*F, [xt("target", "REJECT", 0, rev_info(4))]))),
        ("REJECT from PREROUTING", one(R("filter", "PREROUTING", [xt("target", "REJECT", 0, rev_info(0))]))),
        ("REJECT in a chain jumped to from PREROUTING", one(
            R("filter", "c", [xt("target", "REJECT", 0, rev_info(0))]),
            R("filter", "PREROUTING", [jump("c")]))),
        ("REJECT in a table not named filter", one(R("nat", "n", [xt("target", "REJECT", 0, rev_info(0))]))),
        ("ERROR target", one(R(*F, [xt("target", "ERROR", 0, z(32))]))),
        ("standard target", one(R(*F, [xt("target", "standard", 0, z(8))]))),
        ("empty target name", one(R(*F, [xt("target", "", 0, z(8))]))),
        ("match revision 256", one(R(*F, [xt("match", "comment", 256, z(256))]))),
        ("match name of 30 characters", one(R(*F, [xt("match", "a" * 30, 0, z(8))]))),
        ("match name of 29 characters", one(R(*F, [xt("match", "a" * 29, 0, z(8))]))),
        ("compat flags UNUSED", one(R(*F, [xt("match", "comment", 0, z(256))], compat(6, 1)))),
        ("compat flags 4", one(R(*F, [xt("match", "comment", 0, z(256))], compat(6, 4)))),
        ("compat proto 0x10000", one(R(*F, [xt("match", "comment", 0, z(256))], compat(0x10000)))),
        ("compat without flags", one(R(*F, [xt("match", "comment", 0, z(256))], compat(6, only="proto")))),
        ("compat without proto", one(R(*F, [xt("match", "comment", 0, z(256))], compat(6, only="flags")))),
        ("bad compat on a rule without xt", one(R(*F, [jump("c")], compat(6, 1)))),
        ("tcp match without protocol", one(R(*F, [xt("match", "tcp", 0, z(8) + b"\xff\xff\xff\xff" + z(4))]))),
        ("tcp match with tcp", one(R(*F, [xt("match", "tcp", 0, struct.pack("=HHHHBBBx", 0, 65535, 0, 65535, 0, 0, 0) + z(4))], compat(6)))),
        ("tcp match bad invflags", one(R(*F, [xt("match", "tcp", 0, struct.pack("=HHHHBBBx", 0, 65535, 0, 65535, 0, 0, 0x10) + z(4))], compat(6)))),
        ("multiport without protocol", one(R(*F, [xt("match", "multiport", 1, bytes([1, 1]) + struct.pack("=H", 80) + z(44))]))),
        ("multiport with udp", one(R(*F, [xt("match", "multiport", 1, bytes([1, 1]) + struct.pack("=H", 80) + z(44))], compat(17)))),
        ("multiport 16 ports", one(R(*F, [xt("match", "multiport", 1, bytes([1, 16]) + z(46))], compat(17)))),
        ("state in bridge", one(R("filter", "INPUT", [xt("match", "state", 0, z(8))], family=7))),
        ("state in arp", one(R("filter", "INPUT", [xt("match", "state", 0, z(8))], family=3))),
        ("state in inet", one(R("x", "in", [xt("match", "state", 0, z(8))], family=1))),
        ("tcp in inet", one(R("x", "in", [xt("match", "tcp", 0, z(16))], family=1))),
        ("LOG level 8", one(R(*F, [xt("target", "LOG", 0, log_info(8))]))),
        ("LOG prefix without NUL", one(R(*F, [xt("target", "LOG", 0, log_info(4, b"p" * 30))]))),
        ("LOG", one(R(*F, [xt("target", "LOG", 0, log_info(4, b"hello "))]))),
        ("limit burst 0", one(R(*F, [xt("match", "limit", 0, limit_info(10000, 0))]))),
        ("limit with private fields set (dumped as zeros)", one(R(*F, [xt("match", "limit", 0, limit_info(10000, 5, 0x1122334455667788))]))),
        ("string unknown algo", one(R(*F, [xt("match", "string", 1, string_info(b"xx", b"abc"))]))),
        ("string empty pattern", one(R(*F, [xt("match", "string", 1, string_info(b"bm", b""))]))),
        ("string from > to", one(R(*F, [xt("match", "string", 1, string_info(b"bm", b"abc", 0, 10, 5))]))),
        ("string kmp", one(R(*F, [xt("match", "string", 1, string_info(b"kmp", b"abc"))]))),
        ("MASQUERADE in nat POSTROUTING", one(R("nat", "POSTROUTING", [xt("target", "MASQUERADE", 0, struct.pack("=II", 1, 0) + z(16))]))),
        ("MASQUERADE in filter", one(R(*F, [xt("target", "MASQUERADE", 0, struct.pack("=II", 1, 0) + z(16))]))),
        ("MASQUERADE two ranges", one(R("nat", "POSTROUTING", [xt("target", "MASQUERADE", 0, struct.pack("=II", 2, 0) + z(16))]))),
        ("SNAT v2 in nat PREROUTING", one(R("nat", "PREROUTING", [xt("target", "SNAT", 2, z(56))]))),
        ("SNAT v2 in a chain jumped to from nat PREROUTING", one(
            R("nat", "n", [xt("target", "SNAT", 2, z(56))]),
            R("nat", "PREROUTING", [jump("n")]))),
        ("nfacct match", one(R(*F, [xt("match", "nfacct", 0, z(40))]))),
        ("set match", one(R(*F, [xt("match", "set", 1, z(8))]))),
        ("SET target without sets", one(R(*F, [xt("target", "SET", 1, b"\xff\xff\0\0\xff\xff\0\0")]))),
        ("rateest without estimator", one(R(*F, [xt("match", "rateest", 0, b"RE1".ljust(32, b"\0") + struct.pack("=HH", 0x12, 2) + z(36))]))),
        ("ebt vlan id clears prio", one(R("filter", "INPUT", [xt("match", "vlan", 0, vlan_info(2, 1, 0x03))], compat(0x0081), family=7))),
        ("ebt vlan without 802.1Q", one(R("filter", "INPUT", [xt("match", "vlan", 0, vlan_info(2, 0, 0x01))], family=7))),
        ("ebt ip with IPv4 ethertype", one(R("filter", "INPUT", [xt("match", "ip", 0, z(32))], compat(0x0008), family=7))),
        ("ebt ip with inverted ethertype", one(R("filter", "INPUT", [xt("match", "ip", 0, z(32))], compat(0x0008, 2), family=7))),
        ("ebt among", one(R("filter", "INPUT", [xt("match", "among", 0, z(64))], family=7))),
        ("comment in netdev", [begin(0) + table(1, "nd", 5) + chain(2, "nd", "c", 0, 0, "filter", 5, "lo")
                               + rule(3, "nd", "c", [xt("match", "comment", 0, z(256))], family=5) + end(4)]),
        ("MARK in inet", one(R("x", "in", [xt("target", "MARK", 2, z(8))], family=1))),
        ("limit in inet", one(R("x", "in", [xt("match", "limit", 0, limit_info(10000, 5))], family=1))),
        ("limit in arp", one(R("filter", "INPUT", [xt("match", "limit", 0, limit_info(10000, 5))], family=3))),
        ("MARK in arp", one(R("filter", "INPUT", [xt("target", "MARK", 2, z(8))], family=3))),
        ("ebt limit", one(R("filter", "INPUT", [xt("match", "limit", 0, struct.pack("=II", 10000, 5) + z(24))], family=7))),
        ("ebt pkttype invert 2", one(R("filter", "INPUT", [xt("match", "pkttype", 0, bytes([0, 2]) + z(6))], family=7))),
        ("SYNPROXY without tcp", one(R(*F, [xt("target", "SYNPROXY", 0, z(8))]))),
        ("list ruleset", [msg(nft(6), REQ | DUMP, 1, 0)]),
    ]


if __name__ == "__main__":
    rawcases.cases = cases
    rawcases.main()
