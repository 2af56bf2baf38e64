#!/usr/bin/env python3
"""Records the kernel's answers to hand-built datagrams (edge cases nft never sends).

Usage (as root): rawcases.py OUT.json

All cases run in order in one fresh network namespace (removed at the end), each on a
socket of its own; the output has the format of capture.py, so tests/replay.rs replays it.
"""
import json
import os
import select
import socket
import struct
import subprocess
import sys
import uuid

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_EXT_ACK = 11
NETLINK_ADD_MEMBERSHIP = 1

REQ, MULTI, ACK, ECHO = 0x1, 0x2, 0x4, 0x8
DUMP = 0x300
REPLACE, EXCL, CREATE, APPEND = 0x100, 0x200, 0x400, 0x800
BEGIN, END = 0x10, 0x11


def nft(t):
    return (10 << 8) | t


def attr(kind, value):
    ln = 4 + len(value)
    return struct.pack("=HH", ln, kind) + value + b"\0" * ((4 - ln % 4) % 4)


def strz(kind, s):
    return attr(kind, s.encode() + b"\0")


def u32(kind, v):
    return attr(kind, struct.pack(">I", v))


def nest(kind, *children):
    return attr(kind | 0x8000, b"".join(children))


def msg(mtype, flags, seq, family=2, res_id=0, attrs=b"", raw_payload=None, length=None):
    payload = raw_payload if raw_payload is not None else struct.pack("=BBH", family, 0, socket.htons(res_id)) + attrs
    ln = length if length is not None else 16 + len(payload)
    body = struct.pack("=IHHII", ln, mtype, flags, seq, 0) + payload
    return body + b"\0" * ((4 - len(body) % 4) % 4)


def begin(seq=0, flags=REQ, res_id=10, genid=None, host_order=False):
    a = u32(1, genid) if genid is not None else b""
    payload = struct.pack("=BBH", 0, 0, res_id if host_order else socket.htons(res_id)) + a
    return msg(BEGIN, flags, seq, raw_payload=payload)


def end(seq, flags=REQ):
    return msg(END, flags, seq, family=0, res_id=10)


def newtable(seq, name, flags=REQ, family=2):
    return msg(nft(0), flags, seq, family, attrs=strz(1, name))


def newchain(seq, table, name, flags=REQ | CREATE):
    return msg(nft(3), flags, seq, attrs=strz(1, table) + strz(3, name))


def newrule_accept(seq, table, chain, flags=REQ | CREATE | APPEND):
    verdict = nest(2, nest(2, u32(1, 1)))
    imm = nest(1, strz(1, "immediate"), nest(2, u32(1, 0), verdict))
    return msg(nft(6), flags, seq, attrs=strz(1, table) + strz(2, chain) + nest(4, imm))


def cases():
    return [
        ("batch with ACK on BEGIN, messages and END", [
            begin(0, REQ | ACK) + newtable(1, "a", REQ | ACK) + newchain(2, "a", "c", REQ | CREATE | ACK) + end(3, REQ | ACK)]),
        ("GETGEN with ACK", [msg(nft(16), REQ | ACK, 7, family=0)]),
        ("genid mismatch on BEGIN", [begin(0, genid=12345) + newtable(1, "b") + end(2)]),
        ("genid match on BEGIN (genid 2 after one commit)", [begin(0, genid=2) + newtable(1, "b") + end(2)]),
        ("res_id in host byte order", [begin(0, host_order=True) + newtable(1, "c") + end(2)]),
        ("batch for the compat subsystem", [begin(0, res_id=11) + newtable(1, "d") + end(2)]),
        ("batch for an unknown subsystem", [begin(0, res_id=99) + newtable(1, "d") + end(2)]),
        ("GET inside a batch", [begin(0) + msg(nft(1), REQ | DUMP, 1) + newtable(2, "e") + end(3)]),
        ("message without NLM_F_REQUEST in a batch", [begin(0) + newtable(1, "f", 0) + newtable(2, "g") + end(3)]),
        ("control message type in a batch", [begin(0) + msg(3, REQ, 1) + end(2)]),
        ("other subsystem's message in a batch", [begin(0) + msg((11 << 8) | 0, REQ, 1) + end(2)]),
        ("unknown nf_tables message in a batch", [begin(0) + msg(nft(60), REQ, 1) + end(2)]),
        ("second BEGIN aborts and drops errors", [begin(0) + newtable(1, "zz", REQ, family=99) + begin(2) + end(3)]),
        ("truncated message aborts", [begin(0) + newtable(1, "h") + msg(nft(0), REQ, 2, attrs=strz(1, "i"), length=200)]),
        ("no END: validate and abort", [begin(0) + newtable(1, "j") + newchain(2, "j", "c")]),
        ("no END with an error", [begin(0) + newchain(1, "nosuch", "c")]),
        ("NEWTABLE outside a batch", [newtable(1, "k", REQ | ACK)]),
        ("message without nfgenmsg, with ACK", [msg(nft(1), REQ | ACK, 1, raw_payload=b"\x02\x00")]),
        ("unknown message outside a batch", [msg(nft(60), REQ, 1)]),
        ("unknown subsystem outside a batch", [msg((14 << 8) | 1, REQ, 1)]),
        ("reply-type message outside a batch is skipped", [msg(nft(1), ACK, 1)]),
        ("two GETs in one datagram", [msg(nft(16), REQ, 1, family=0) + msg(nft(1), REQ | ACK, 2, attrs=strz(1, "a"))]),
        ("GETTABLE of a missing table", [msg(nft(1), REQ | ACK, 1, attrs=strz(1, "nosuch"))]),
        ("GETCHAIN of a missing chain", [msg(nft(4), REQ, 1, attrs=strz(1, "a") + strz(3, "nosuch"))]),
        ("GETSETELEM dump of a missing set", [msg(nft(13), REQ | DUMP, 1, attrs=strz(1, "a") + strz(2, "nosuch"))]),
        ("GETSET of family 0", [msg(nft(10), REQ, 1, family=0, attrs=strz(1, "a") + strz(2, "s"))]),
        ("name too long in a batch", [begin(0) + newtable(1, "x" * 300) + end(2)]),
        ("name too long outside a batch", [msg(nft(1), REQ, 1, attrs=strz(1, "x" * 300))]),
        ("short u32 attribute", [begin(0) + msg(nft(0), REQ, 1, attrs=strz(1, "l") + attr(2, b"\0\0")) + end(2)]),
        ("unsupported family", [begin(0) + newtable(1, "m", family=99) + end(2)]),
        ("rule without CREATE", [begin(0) + newrule_accept(1, "a", "c", REQ) + end(2)]),
        ("rule with REPLACE and no handle", [begin(0) + newrule_accept(1, "a", "c", REQ | CREATE | REPLACE) + end(2)]),
        ("rule echo", [begin(0) + newrule_accept(1, "a", "c", REQ | CREATE | APPEND | ECHO) + end(2)]),
        ("echo on the first message brings NEWGEN", [begin(0) + newchain(1, "a", "c2", REQ | CREATE | ECHO) + end(2)]),
        ("destroy a missing table", [begin(0) + msg(nft(26), REQ, 1, attrs=strz(1, "nosuch")) + end(2)]),
        ("destroy a missing chain", [begin(0) + msg(nft(27), REQ, 1, attrs=strz(1, "a") + strz(3, "nosuch")) + end(2)]),
        ("delete a missing chain", [begin(0) + msg(nft(5), REQ, 1, attrs=strz(1, "a") + strz(3, "nosuch")) + end(2)]),
        ("GETRULE_RESET dump", [msg(nft(25), REQ | DUMP, 1, family=0)]),
        ("empty batch", [begin(0) + end(1)]),
        ("empty batch with ACK on END", [begin(0) + end(1, REQ | ACK)]),
        ("add an existing table (no change)", [begin(0) + newtable(1, "a") + end(2)]),
        ("delete table a", [begin(0) + msg(nft(2), REQ, 1, attrs=strz(1, "a")) + end(2)]),
        ("flush ruleset", [begin(0) + msg(nft(2), REQ, 1, family=0) + end(2)]),
    ]


def drain(sock, wait=0.05):
    out = []
    while True:
        r, _, _ = select.select([sock], [], [], wait)
        if not r:
            return out
        out.append(sock.recv(1 << 20).hex())


def run(out_path):
    listener = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    listener.bind((0, 0))
    listener.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, 7)
    results = []
    for name, datagrams in cases():
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        s.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        s.bind((0, 0))
        portid = s.getsockname()[0]
        exchanges = []
        for d in datagrams:
            s.sendto(d, (0, 0))
            exchanges.append({"send": d.hex(), "recv": drain(s), "portid": portid})
        s.close()
        results.append({"command": "raw: " + name, "exit": 0, "stdout": "", "stderr": "", "portid": portid,
                        "pid": os.getpid(), "ext_ack": True, "exchanges": exchanges, "multicast": drain(listener)})
    with open(out_path, "w") as f:
        json.dump({"kernel": os.uname().release, "commands": results}, f, indent=1)
        f.write("\n")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--inside":
        run(sys.argv[2])
        return
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    ns = "nftshim-raw-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(sys.argv[0]), "--inside",
                        os.path.abspath(sys.argv[1])], check=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    main()
