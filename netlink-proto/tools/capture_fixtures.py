#!/usr/bin/env python3
"""Records real NETLINK_NETFILTER traffic between nft / iptables-nft and the kernel.

Every command runs under `strace` inside a fresh network namespace; the hex dumps of
the datagrams written to and read from the netfilter socket are kept (both directions),
duplicates dropped, and written as fixture files for the byte-exact round-trip tests:

    # <command>
    > <hex of one netlink message the client sent>
    < <hex of one netlink message the kernel sent back>

Messages are listed once per file and attribute layout: a message with the same type,
flags, family and attribute tree (types and lengths) as an earlier one is left out.

Usage (as root): tools/capture_fixtures.py [OUTDIR [special|nft|ipt]]
(default: tests/fixtures, everything)
The namespaces it creates are named nftshim-proto-<pid>-<n> and removed on exit.
"""

import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

NFT_PY = Path("/work/shared/conformance/nft-py")
IPT = Path("/work/shared/conformance/iptables")
HERE = Path(__file__).resolve().parent
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "tests" / "fixtures"

# `strace -f -o FILE` starts every syscall line with the pid.
SYSCALL = re.compile(r"^(\d+)\s+(\w+)\((\d+),.*\)\s+=\s+(-?\d+)")
SOCKET = re.compile(r"^(\d+)\s+socket\((.*)\)\s+=\s+(\d+)")
DUMP = re.compile(r"^ \| [0-9a-f]{5}  ")

_ns_counter = 0


class Netns:
    def __init__(self):
        global _ns_counter
        _ns_counter += 1
        self.name = f"nftshim-proto-{os.getpid()}-{_ns_counter}"

    def __enter__(self):
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"], check=True)
        return self

    def __exit__(self, *exc):
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def trace(ns, argv, stdin=None):
    """Runs argv in the namespace under strace; returns (exit code, [(dir, bytes)])."""
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as log:
        cmd = ["ip", "netns", "exec", ns.name, "strace", "-f", "-qq", "-o", log.name,
               "-e", "trace=socket,sendto,sendmsg,recvfrom,recvmsg",
               "-e", "signal=none", "-e", "write=all", "-e", "read=all", "-s", "0"] + argv
        r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
        return r.returncode, parse_strace(log.read().splitlines())


def parse_strace(lines):
    netfilter_fds = set()
    out = []
    current = None  # (dir, bytearray) of the syscall being dumped
    for line in lines:
        m = SOCKET.match(line)
        if m:
            fd = (m.group(1), int(m.group(3)))
            if "NETLINK_NETFILTER" in m.group(2):
                netfilter_fds.add(fd)
            else:
                netfilter_fds.discard(fd)
            current = None
            continue
        m = SYSCALL.match(line)
        if m:
            call, fd, ret = m.group(2), (m.group(1), int(m.group(3))), int(m.group(4))
            if fd in netfilter_fds and ret > 0:
                direction = ">" if call.startswith("send") else "<"
                current = (direction, bytearray())
                out.append(current)
            else:
                current = None
            continue
        if current is not None and DUMP.match(line):
            current[1].extend(bytes.fromhex("".join(line[10:59].split())))
    return [(d, bytes(b)) for d, b in out if b]


def split_messages(data):
    """The netlink messages of one datagram (a malformed tail is kept as one piece)."""
    out, off = [], 0
    while off < len(data):
        length = int.from_bytes(data[off:off + 4], "little") if off + 4 <= len(data) else 0
        if length < 16 or off + length > len(data):
            out.append(data[off:])
            break
        out.append(data[off:off + length])
        off += (length + 3) & ~3
    return out


def shape(buf, depth=0):
    """The attribute tree of buf as (type, length, children) tuples, values left out;
    None when buf is not a whole list of attributes (a leaf value)."""
    out, off = [], 0
    while off < len(buf):
        if off + 4 > len(buf):
            return None
        length = int.from_bytes(buf[off:off + 2], "little")
        kind = int.from_bytes(buf[off + 2:off + 4], "little")
        if length < 4 or off + length > len(buf):
            return None
        inner = shape(buf[off + 4:off + length], depth + 1) if depth < 8 and length > 4 else None
        out.append((kind, length, inner))
        off += (length + 3) & ~3
    return tuple(out)


def dedup_key(msg):
    """Messages of the same type, flags and attribute layout test the same code paths
    whatever the values (sequence numbers, port ids, generation ids, addresses, ports),
    so only the first of them is kept."""
    if len(msg) < 20:
        return bytes(msg)
    return (bytes(msg[4:8]), msg[16], shape(msg[20:]))


class Recorder:
    def __init__(self, path):
        self.path = path
        self.seen = set()
        self.lines = []

    def run(self, ns, argv, stdin=None):
        rc, datagrams = trace(ns, argv, stdin)
        fresh = []
        for d, data in datagrams:
            for msg in split_messages(data):
                key = (d, dedup_key(msg))
                if key in self.seen:
                    continue
                self.seen.add(key)
                fresh.append(f"{d} {msg.hex()}")
        if fresh:
            self.lines.append("# " + " ".join(shlex.quote(a) for a in argv))
            self.lines.extend(fresh)
        return rc

    def save(self):
        if self.lines:
            self.path.write_text("\n".join(self.lines) + "\n")
            print(f"{self.path.name}: {len(self.lines)} lines", file=sys.stderr)


# ---- nftables tests/py ----

SET_KEYWORDS = ("flags", "timeout", "size", "policy", "counter", "gc-interval", "elements")


def set_body(spec):
    # "type ipv4_addr . ipv4_addr flags interval" -> "type ipv4_addr . ipv4_addr; flags interval;"
    words, parts = spec.split(), []
    for w in words:
        if w in SET_KEYWORDS and parts:
            parts.append(";")
        parts.append(w)
    return " ".join(parts) + ";"


OBJ_TYPES = ("ct helper", "ct timeout", "ct expectation", "counter", "quota", "limit", "synproxy", "secmark")


def obj_command(family, table, name, spec):
    spec = spec.strip()
    if not spec.startswith("type "):
        return None
    spec = spec[5:]
    for t in OBJ_TYPES:
        if spec.startswith(t):
            rest = spec[len(t):].strip()
            if not rest.startswith("{"):
                rest = "{ " + rest + " }"
            return ["nft", "add"] + t.split() + [family, table, name, rest]
    return None


def nft_py_file(path):
    chains, tables, lines = {}, [], []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("-"):
            continue
        if line.startswith(":"):
            name, _, spec = line[1:].partition(";")
            chains[name] = spec
        elif line.startswith("*"):
            fam, table, names = line[1:].split(";")
            tables.append((fam, table, names.split(",")))
        else:
            lines.append(line)
    rec = Recorder(OUT / f"nft-{path.parent.name}-{path.stem}.hex")
    with Netns() as ns:
        for fam, table, names in tables:
            rec.run(ns, ["nft", "add", "table", fam, table])
            for c in names:
                spec = chains.get(c, "")
                rec.run(ns, ["nft", "add", "chain", fam, table, c, "{ " + spec + "; }"])
            for line in lines:
                # BODY;ok  BODY;ok;CANONICAL  BODY;fail -- BODY may itself hold ';'.
                m = re.match(r"^(.*?);(ok|fail)(?:;.*)?$", line)
                if not m or m.group(2) != "ok":
                    continue
                body = m.group(1)
                if body.startswith("!"):
                    name, _, spec = body[1:].partition(" ")
                    rec.run(ns, ["nft", "add", "set", fam, table, name, "{ " + set_body(spec) + " }"])
                elif body.startswith("?"):
                    name, _, elems = body[1:].partition(" ")
                    rec.run(ns, ["nft", "add", "element", fam, table, name, "{ " + elems + " }"])
                elif body.startswith("%"):
                    name, _, spec = body[1:].partition(" ")
                    cmd = obj_command(fam, table, name, spec)
                    if cmd:
                        rec.run(ns, cmd)
                else:
                    for c in names:
                        rec.run(ns, ["nft", "add", "rule", fam, table, c, body])
                        break
        rec.run(ns, ["nft", "list", "ruleset"])
        rec.run(ns, ["nft", "--echo", "--handle", "add", "table", "inet", "echo-test"])
        rec.run(ns, ["nft", "flush", "ruleset"])
    rec.save()


# ---- iptables-nft extensions tests ----

def ipt_file(path):
    stem = path.stem
    if stem.startswith("libip6t_"):
        binary = "ip6tables-nft"
    elif stem.startswith("libebt_"):
        binary = "ebtables-nft"
    elif stem.startswith("libarpt_"):
        binary = "arptables-nft"
    else:
        binary = "iptables-nft"
    table, chains, rules = "filter", [], []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(":"):
            chains = line[1:].split(",")
        elif line.startswith("*"):
            table = line[1:]
        else:
            parts = line.split(";")
            if len(parts) >= 3 and parts[-1] == "OK" and chains:
                rules.append((table, chains[0], parts[0]))
    if not rules:
        return
    rec = Recorder(OUT / f"ipt-{stem}.hex")
    with Netns() as ns:
        for table, chain, rule in rules:
            rec.run(ns, [binary, "-t", table, "-A", chain] + shlex.split(rule))
        for table in sorted({t for t, _, _ in rules}):
            rec.run(ns, [binary, "-t", table, "-S"])
            rec.run(ns, [binary, "-t", table, "-L", "-n", "-v"])
        rec.run(ns, ["nft", "list", "ruleset"])
        save = binary.replace("-nft", "-nft-save") if binary in ("iptables-nft", "ip6tables-nft") else None
        if save:
            rec.run(ns, [save])
    rec.save()


# ---- hand-written scenarios: monitor, trace, flowtables, odd objects ----

def special():
    rec = Recorder(OUT / "special.hex")
    with Netns() as ns:
        script = """
table inet t {
  set s4 { type ipv4_addr; flags interval, timeout; timeout 1h; elements = { 10.0.0.0/8 timeout 10m, 192.168.0.1 } }
  set c { type ipv4_addr . inet_service; flags interval; elements = { 1.2.3.4 . 80-90 } }
  map m { type ipv4_addr : verdict; elements = { 1.1.1.1 : drop, 2.2.2.2 : jump other } }
  map vm { typeof ip saddr : meta mark; elements = { 3.3.3.3 : 0x42 } }
  set dyn { type ipv4_addr; size 65535; flags dynamic; counter; }
  set e { type ipv4_addr; elements = { 5.5.5.5 comment "hello" } }
  counter cnt { packets 5 bytes 7 }
  quota q { over 100 mbytes used 10 mbytes }
  chain other { counter; }
  chain input {
    type filter hook input priority filter; policy accept;
    meta nftrace set 1
    ip saddr @s4 counter accept
    ip saddr vmap @m
    tcp dport 22 ct state new add @dyn { ip saddr } accept
    tcp dport 23 update @dyn { ip saddr } accept
    ip daddr . tcp dport @c counter name cnt
    ip protocol icmp counter comment "icmp in"
    meta mark set ip saddr map @vm
    notrack
  }
}
"""
        rec.run(ns, ["nft", "-f", "-"], stdin=script)
        # This kernel has no flowtable support (ENOENT), but what nft sends is still worth
        # keeping: the flowtable, and (in a batch the kernel then rejects) `flow add`.
        rec.run(ns, ["nft", "add", "flowtable", "inet", "t", "ft",
                     "{ hook ingress priority filter; devices = { lo }; counter; }"])
        rec.run(ns, ["nft", "-f", "-"], stdin="""
table inet f {
  flowtable ft { hook ingress priority filter; devices = { lo }; }
  chain c { type filter hook forward priority 0; flow add @ft; }
}
""")
        rec.run(ns, ["nft", "add", "rule", "inet", "t", "input", "tcp", "dport", "80",
                     "synproxy", "mss", "1460", "wscale", "7", "timestamp", "sack-perm"])
        rec.run(ns, ["nft", "-a", "list", "ruleset"])
        rec.run(ns, ["nft", "list", "set", "inet", "t", "s4"])
        rec.run(ns, ["nft", "reset", "counters"])
        rec.run(ns, ["nft", "delete", "element", "inet", "t", "s4", "{ 192.168.0.1 }"])
        rec.run(ns, ["nft", "--echo", "add", "rule", "inet", "t", "other", "ip", "ttl", "1", "drop"])
        rec.run(ns, ["nft", "-c", "add", "rule", "inet", "t", "other", "ip", "ttl", "2", "drop"])
        rec.run(ns, ["nft", "add", "rule", "inet", "t", "nonexistent", "drop"])
        # Trace and monitor events: run `nft monitor` in the background while a ping walks
        # the traced chain (a UDP datagram to a closed port: the ICMP error is traced too).
        mon_log = tempfile.NamedTemporaryFile("r", suffix=".strace")
        mon = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, "strace", "-f", "-qq", "-o", mon_log.name,
             "-e", "trace=socket,sendto,sendmsg,recvfrom,recvmsg", "-e", "signal=none",
             "-e", "write=all", "-e", "read=all", "-s", "0", "timeout", "3", "nft", "monitor"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import time
        time.sleep(1.0)
        send_udp = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 9))"
        subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-c", send_udp], check=True)
        rec.run(ns, ["nft", "add", "chain", "inet", "t", "mon"])
        rec.run(ns, ["nft", "delete", "chain", "inet", "t", "mon"])
        time.sleep(1.0)
        mon.terminate()
        mon.wait()
        fresh = [f"{d} {m.hex()}" for d, data in parse_strace(mon_log.read().splitlines())
                 for m in split_messages(data)]
        if fresh:
            rec.lines.append("# nft monitor")
            rec.lines.extend(fresh)
        rec.run(ns, ["nft", "flush", "ruleset"])
    rec.save()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    only = sys.argv[2] if len(sys.argv) > 2 else None
    if only in (None, "special"):
        special()
    if only in (None, "nft"):
        for path in sorted(NFT_PY.rglob("*.t")):
            nft_py_file(path)
    if only in (None, "ipt"):
        for path in sorted(IPT.glob("*.t")):
            ipt_file(path)


if __name__ == "__main__":
    main()
