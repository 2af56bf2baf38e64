#!/usr/bin/env python3
"""Asks this machine's kernel what x_tables checks each compat extension carries.

Usage (as root): xtprobe.py OUT.json

For every (family, match/target, name, revision) listed in src/xt_table.rs, adds rules with
an `match`/`target` expression to tables of a fresh network namespace and reads the
kernel's log (/dev/kmsg) for xt_check_match/xt_check_target's messages:
  "invalid size K (kernel) != (user) U"   -> XT_ALIGN(matchsize)
  "only valid in T table, not X"           -> .table
  "used from hooks A, but only valid from B" -> .hooks
  "only valid for protocol P"              -> .proto
plus the errno of a zero-filled info of the right size from a regular chain (what
->checkentry says about all-zero data; a hint, not stored). The messages are
rate-limited (10 per 5 s per call site), so probes are paced.
"""
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rawcases import (ACK, APPEND, CREATE, NETLINK_NETFILTER, REQ, attr, begin, end, msg, nest,  # noqa: E402
                      nft, strz, u32)

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "xt_table.rs")
FAMS = {"V4": [2], "V6": [10], "Arp": [3], "Br": [7], "Any": [2, 10, 7, 3]}
PREFIX = {2: "ip", 10: "ip6", 7: "eb", 3: "arp"}
HOOKS = {2: [0, 1, 2, 3, 4], 10: [0, 1, 2, 3, 4], 7: [0, 1, 2, 3, 4], 3: [0, 1]}
INET_NAMES = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING", "BROUTING"]
ARP_NAMES = ["INPUT", "FORWARD", "OUTPUT"]
PACE = 0.55


def extensions():
    """The candidates: every row of src/xt_table.rs (family 0 probed in all four)."""
    out = []
    row = r'Ext \{ family: (\d+), target: (\w+), name: "([^"]+)", rev: (\d+)'
    for fam, target, name, rev in re.findall(row, open(SRC).read()):
        fams = [2, 10, 7, 3] if fam == "0" else [int(fam)]
        for f in fams:
            out.append((f, "target" if target == "true" else "match", name, int(rev)))
    return sorted(set(out))


class Kmsg:
    def __init__(self):
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def read(self):
        lines = []
        while True:
            try:
                rec = os.read(self.fd, 8192).decode(errors="replace")
            except BlockingIOError:
                return lines
            except OSError:  # EPIPE: records overwritten
                continue
            lines.append(rec.split(";", 1)[-1].strip())


class Nl:
    def __init__(self):
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.s.bind((0, 0))
        self.seq = 100

    def batch(self, *msgs):
        self.seq += 10
        data = begin(self.seq) + b"".join(m(self.seq + 1 + i) for i, m in enumerate(msgs)) + end(self.seq + 9)
        self.s.sendto(data, (0, 0))
        errs = []
        while True:
            r, _, _ = select.select([self.s], [], [], 0.2)
            if not r:
                return errs
            buf = self.s.recv(1 << 20)
            off = 0
            while off + 16 <= len(buf):
                ln, ty = struct.unpack_from("=IH", buf, off)
                if ty == 2:
                    errs.append(-struct.unpack_from("=i", buf, off + 16)[0])
                off += (ln + 3) & ~3
            if errs and errs[-1] != 0:
                return errs


def table_msg(fam, name):
    return lambda seq: msg(nft(0), REQ | ACK, seq, fam, attrs=strz(1, name))


def chain_msg(fam, table, name, hook=None):
    a = strz(1, table) + strz(3, name)
    if hook is not None:
        a += nest(4, u32(1, hook), u32(2, 0)) + strz(7, "filter")
    return lambda seq: msg(nft(3), REQ | CREATE | ACK, seq, fam, attrs=a)


def rule_msg(fam, table, chain, kind, name, rev, info, proto=None):
    data = nest(2, strz(1, name), u32(2, rev), attr(3, info))
    ex = nest(1, strz(1, kind), data)
    a = strz(1, table) + strz(2, chain) + nest(4, ex)
    if proto is not None:
        a += nest(5, u32(1, proto), u32(2, 0))
    return lambda seq: msg(nft(6), REQ | CREATE | APPEND | ACK, seq, fam, attrs=a)


class Prober:
    def __init__(self):
        self.nl = Nl()
        self.k = Kmsg()
        self.tables = set()

    def ensure(self, fam, table):
        if (fam, table) in self.tables:
            return
        msgs = [table_msg(fam, table), chain_msg(fam, table, "c")]
        for h in HOOKS[fam]:
            msgs.append(chain_msg(fam, table, "h%d" % h, h))
        errs = self.nl.batch(*msgs)
        if any(errs):
            raise SystemExit("setup of %d %s failed: %s" % (fam, table, errs))
        self.tables.add((fam, table))

    def probe(self, fam, table, chain, kind, name, rev, info, proto=None):
        self.ensure(fam, table)
        self.k.read()
        errs = self.nl.batch(rule_msg(fam, table, chain, kind, name, rev, info, proto))
        time.sleep(PACE)
        tag = "%s_tables: %s" % (PREFIX[fam], name)
        lines = [l for l in self.k.read() if tag in l]
        err = next((e for e in errs if e), 0)
        return err, lines


def hooks_mask(text, fam):
    names = ARP_NAMES if fam == 3 else INET_NAMES
    return sum(1 << names.index(n) for n in text.split("/") if n in names)


def probe_one(p, fam, kind, name, rev):
    r = {"family": fam, "kind": kind, "name": name, "rev": rev}
    err, lines = p.probe(fam, "probe_t", "c", kind, name, rev, b"\0" * 16384)
    r["big_errno"] = err
    size = None
    for l in lines:
        m = re.search(r"invalid size (\d+) \(kernel\) != \(user\) (\d+)", l)
        if m:
            size = int(m.group(1))
    r["size"] = size
    if size is None:
        r["note"] = lines
        return r
    err, lines = p.probe(fam, "probe_t", "c", kind, name, rev, b"\0" * size)
    table = None
    for l in lines:
        m = re.search(r"only valid in (\S+) table, not", l)
        if m:
            table = m.group(1)
    r["table"] = table
    tname = table or "probe_t"
    if table:
        err, lines = p.probe(fam, tname, "c", kind, name, rev, b"\0" * size)
    r["zero_errno"] = err
    proto = None
    for l in lines:
        m = re.search(r"only valid for protocol (\d+)", l)
        if m:
            proto = int(m.group(1))
    r["proto"] = proto
    hooks = None
    for h in HOOKS[fam]:
        err, lines = p.probe(fam, tname, "h%d" % h, kind, name, rev, b"\0" * size, proto)
        for l in lines:
            m = re.search(r"but only (?:valid|usable) from (\S+)", l)
            if m:
                hooks = hooks_mask(m.group(1), fam)
        if hooks is not None:
            break
    r["hooks"] = hooks
    return r


def run(out_path):
    p = Prober()
    results = []
    exts = extensions()
    only = os.environ.get("XTPROBE_ONLY")
    if only:
        exts = [e for e in exts if e[2] in only.split(",")]
    for i, (fam, kind, name, rev) in enumerate(exts):
        r = probe_one(p, fam, kind, name, rev)
        print("%d/%d %s" % (i + 1, len(exts), json.dumps(r)), flush=True)
        results.append(r)
        with open(out_path, "w") as f:
            json.dump({"kernel": os.uname().release, "extensions": results}, f, indent=1)
            f.write("\n")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--inside":
        run(sys.argv[2])
        return
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    ns = "nftshim-xt-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__), "--inside",
                        os.path.abspath(sys.argv[1])], check=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    main()
