#!/usr/bin/env python3
"""Records what the real kernel answers to unmodified nft / iptables-nft.

Usage (as root):  capture.py OUT.json -- 'nft add table ip t' 'nft -a list ruleset' ...

Each command runs under `strace -e write=all -e read=all` inside one fresh network
namespace (created here, removed at the end, even on failure). For every NETLINK_NETFILTER
socket the tool keeps each datagram sent and each datagram received, byte for byte, and a
listener socket joined to NFNLGRP_NFTABLES records the multicast events of each command.
The engine's tests replay the sent datagrams and compare the answers with these records.
"""
import json
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
import uuid

NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1

# `strace -f -o FILE` starts each line with the pid.
PID_PREFIX_RE = re.compile(r"^\d+ +(?=\S)")
HEX_RE = re.compile(r"^ \| [0-9a-f]{5}  ((?:[0-9a-f]{2} ?|   ){8} (?:[0-9a-f]{2} ?|   ){8})")


def parse_strace(path):
    """Returns [(fd, 'send'|'recv', bytes)] for NETLINK_NETFILTER sockets, in order."""
    events = []
    nf_fds = set()
    current = None  # (fd, direction) the following hex lines belong to
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = PID_PREFIX_RE.sub("", line, count=1)
            m = HEX_RE.match(line)
            if m and current is not None:
                data = bytes.fromhex(m.group(1).replace(" ", ""))
                events[-1][2].extend(data)
                continue
            if line.startswith(" * "):
                continue
            current = None
            if line.startswith("socket(") and "NETLINK_NETFILTER" in line:
                fd = int(line.rsplit("=", 1)[1].split()[0])
                nf_fds.add(fd)
                continue
            if line.startswith("setsockopt(") and "NETLINK_EXT_ACK" in line and "[1]" in line:
                fd = int(line[len("setsockopt("):].split(",")[0])
                if fd in nf_fds:
                    events.append([fd, "ext_ack", bytearray()])
                continue
            if line.startswith("close("):
                try:
                    nf_fds.discard(int(line[6:].split(")")[0]))
                except ValueError:
                    pass
                continue
            for name, direction in (("sendto(", "send"), ("sendmsg(", "send"),
                                    ("recvmsg(", "recv"), ("recvfrom(", "recv")):
                if line.startswith(name):
                    fd = int(line[len(name):].split(",")[0])
                    ret = line.rsplit("=", 1)[1].split()[0]
                    if fd in nf_fds and ret.lstrip("-").isdigit() and int(ret) > 0:
                        events.append([fd, direction, bytearray()])
                        current = (fd, direction)
                    break
    return [(fd, d, bytes(b)) for fd, d, b in events]


def group_exchanges(events):
    """Groups received datagrams under the send that preceded them on the same socket."""
    sockets = {}
    order = []
    for fd, direction, data in events:
        if direction == "ext_ack":
            continue
        if direction == "send":
            sockets.setdefault(fd, []).append({"fd": fd, "send": data.hex(), "recv": []})
            order.append((fd, len(sockets[fd]) - 1))
        elif fd in sockets and sockets[fd]:
            sockets[fd][-1]["recv"].append(data.hex())
    exchanges = [sockets[fd][i] for fd, i in order]
    # Each socket has its own port id: the kernel writes it into every reply.
    ports = {}
    for ex in exchanges:
        for rec in ex["recv"]:
            b = bytes.fromhex(rec)
            if len(b) >= 16:
                ports.setdefault(ex["fd"], int.from_bytes(b[12:16], "little"))
    for ex in exchanges:
        ex["portid"] = ports.get(ex["fd"])
    return exchanges


def reply_identity(exchanges):
    """Port id and pid of the caller, read back from the kernel's own answers."""
    portid, pid = None, None
    for ex in exchanges:
        for rec in ex["recv"]:
            b = bytes.fromhex(rec)
            if len(b) >= 16 and portid is None:
                portid = int.from_bytes(b[12:16], "little")
            # NEWGEN (0x0a0f): NFTA_GEN_PROC_PID is the second attribute.
            if len(b) >= 36 and int.from_bytes(b[4:6], "little") == 0x0A0F and pid is None:
                pid = int.from_bytes(b[32:36], "big")
    return portid, pid


def drain(sock):
    out = []
    while True:
        r, _, _ = select.select([sock], [], [], 0.2)
        if not r:
            return out
        out.append(sock.recv(1 << 20).hex())


def run_in_netns(out_path, commands):
    results = []
    listener = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    listener.bind((0, 0))
    listener.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
    for cmd in commands:
        with tempfile.NamedTemporaryFile(suffix=".strace", delete=False) as tf:
            trace = tf.name
        argv = ["strace", "-f", "-o", trace, "-s", "0", "-e",
                "trace=socket,close,setsockopt,sendto,sendmsg,recvmsg,recvfrom",
                "-e", "write=all", "-e", "read=all", "sh", "-c", cmd]
        proc = subprocess.run(argv, capture_output=True, text=True)
        time.sleep(0.05)
        events = parse_strace(trace)
        ext_ack = any(d == "ext_ack" for _, d, _ in events)
        exchanges = group_exchanges(events)
        os.unlink(trace)
        portid, pid = reply_identity(exchanges)
        results.append({
            "command": cmd,
            "exit": proc.returncode,
            "stdout": proc.stdout,
            "stderr": proc.stderr,
            "portid": portid,
            "pid": pid,
            "ext_ack": ext_ack,
            "exchanges": exchanges,
            "multicast": drain(listener),
        })
    with open(out_path, "w") as f:
        json.dump({"kernel": os.uname().release, "commands": results}, f, indent=1)
        f.write("\n")


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--inside":
        run_in_netns(sys.argv[2], sys.argv[4:])
        return
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit(__doc__)
    out, commands = os.path.abspath(sys.argv[1]), sys.argv[3:]
    ns = "nftshim-capture-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__),
                        "--inside", out, "--", *commands], check=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    main()
