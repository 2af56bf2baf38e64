#!/usr/bin/env python3
"""Differential fuzzing against the kernel: replays captured datagrams and, after each
batch, a mutated copy of it; records what the kernel answers to all of them.

Usage (as root): mutfuzz.py SEED OUTDIR IN.json [IN.json ...]

Each input runs in a fresh network namespace and gives OUTDIR/<same name>, in
capture.py's format, so `NFTSHIM_FIXTURES=DIR cargo test --test replay`
compares the engine's answers with the kernel's for the same sequence (the states stay
in step as long as the engine answers like the kernel). One mutation per mutant: an
attribute anywhere in one message of the batch is dropped, duplicated, truncated,
re-typed, flagged nested, or gets random/extreme bytes; or the message's flags or
family change. Mutants are sent without their END message, so the kernel checks them
and aborts (as for `nft -c`): a mutant never changes the state the captured commands
that follow expect (only handles it used up stay used).
"""
import json
import os
import random
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


def split_msgs(d):
    out, pos = [], 0
    while pos + 16 <= len(d):
        ln = struct.unpack_from("=I", d, pos)[0]
        if ln < 16 or pos + ln > len(d):
            break
        out.append(d[pos:pos + ln])
        pos += (ln + 3) & ~3
    return out


def parse_attrs(b, depth=0):
    out, pos = [], 0
    while pos + 4 <= len(b):
        ln, ty = struct.unpack_from("=HH", b, pos)
        if ln < 4 or pos + ln > len(b):
            return None
        val = b[pos + 4:pos + ln]
        kids = parse_attrs(val, depth + 1) if ty & 0x8000 and depth < 8 else None
        out.append([ty, val, kids])
        pos += (ln + 3) & ~3
    return out


def emit_attrs(attrs):
    out = b""
    for ty, val, kids in attrs:
        v = emit_attrs(kids) if kids is not None else val
        a = struct.pack("=HH", 4 + len(v), ty) + v
        out += a + b"\0" * ((4 - len(a) % 4) % 4)
    return out


def all_slots(attrs, acc):
    for i, a in enumerate(attrs):
        acc.append((attrs, i))
        if a[2] is not None:
            all_slots(a[2], acc)
    return acc


def mutate_msg(m, rnd):
    hdr, gen, body = bytearray(m[:16]), bytearray(m[16:20]), m[20:]
    attrs = parse_attrs(body)
    choice = rnd.random()
    if choice < 0.1 or not attrs:
        flags = struct.unpack_from("=H", hdr, 6)[0]
        flags ^= rnd.choice([0x100, 0x200, 0x400, 0x800, 0x4, 0x8])
        struct.pack_into("=H", hdr, 6, flags)
        what = "flags"
    elif choice < 0.15:
        gen[0] = rnd.choice([0, 1, 2, 3, 5, 7, 10, 99])
        what = "family"
    else:
        slots = all_slots(attrs, [])
        lst, i = rnd.choice(slots)
        ty, val, kids = lst[i]
        op = rnd.choice(["drop", "dup", "trunc", "retype", "random", "ff", "zero", "nest", "bit"])
        what = op
        if op == "drop":
            del lst[i]
        elif op == "dup":
            lst.insert(i, [ty, val, kids])
        elif op == "trunc":
            raw = emit_attrs(kids) if kids is not None else val
            lst[i] = [ty, raw[:rnd.randrange(0, max(1, len(raw)))], None]
        elif op == "retype":
            lst[i] = [(ty & 0xc000) | rnd.randrange(0, 24), val, kids]
        elif op == "random":
            lst[i] = [ty & 0x3fff, bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 2, 4, 8, 16, len(val)]))), None]
        elif op == "ff" and kids is None:
            lst[i] = [ty, b"\xff" * len(val), None]
        elif op == "zero" and kids is None:
            lst[i] = [ty, b"\0" * len(val), None]
        elif op == "nest":
            lst[i] = [ty ^ 0x8000, val, None]
        elif op == "bit" and val:
            v = bytearray(emit_attrs(kids) if kids is not None else val)
            v[rnd.randrange(len(v))] ^= 1 << rnd.randrange(8)
            lst[i] = [ty, bytes(v), None]
        body = emit_attrs(attrs)
    out = bytes(hdr) + bytes(gen) + body
    return struct.pack("=I", len(out)) + out[4:], what


def mutate_batch(d, rnd):
    msgs = split_msgs(d)
    inner = [i for i, m in enumerate(msgs) if struct.unpack_from("=H", m, 4)[0] not in (0x10, 0x11)]
    if not inner:
        return None, None
    i = rnd.choice(inner)
    msgs[i], what = mutate_msg(msgs[i], rnd)
    out = b""
    for m in msgs:
        if struct.unpack_from("=H", m, 4)[0] == 0x11:
            continue
        out += m + b"\0" * ((4 - len(m) % 4) % 4)
    return out, what


def drain(sock, wait=0.05):
    out = []
    while True:
        r, _, _ = select.select([sock], [], [], wait)
        if not r:
            return out
        out.append(sock.recv(1 << 20).hex())


def run(seed, out_path, inputs):
    rnd = random.Random("%s:%s" % (seed, os.path.basename(inputs[0])))
    listener = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    listener.bind((0, 0))
    listener.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, 7)
    results = []
    for path in inputs:
        for cmd in json.load(open(path))["commands"]:
            if "timeout" in cmd["command"] or "expires" in cmd["command"]:
                continue
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            ext_ack = bool(cmd.get("ext_ack"))
            if ext_ack:
                s.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            s.bind((0, 0))
            portid = s.getsockname()[0]
            exchanges = []
            notes = []
            for ex in cmd["exchanges"]:
                d = bytes.fromhex(ex["send"])
                batch = len(d) >= 16 and struct.unpack_from("=H", d, 4)[0] == 0x10
                if batch and rnd.random() < 0.7:
                    mut, what = mutate_batch(d, rnd)
                    if mut is not None:
                        s.sendto(mut, (0, 0))
                        exchanges.append({"send": mut.hex(), "recv": drain(s), "portid": portid})
                        notes.append("%d:%s" % (len(exchanges) - 1, what))
                s.sendto(d, (0, 0))
                exchanges.append({"send": d.hex(), "recv": drain(s), "portid": portid})
            s.close()
            results.append({"command": "mut[%s] %s" % (",".join(notes), cmd["command"]), "exit": 0,
                            "stdout": "", "stderr": "", "portid": portid, "pid": os.getpid(),
                            "ext_ack": ext_ack, "exchanges": exchanges, "multicast": drain(listener)})
    with open(out_path, "w") as f:
        json.dump({"kernel": os.uname().release, "commands": results}, f, indent=1)
        f.write("\n")


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "--inside":
        run(int(sys.argv[2]), sys.argv[3], sys.argv[4:])
        return
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    os.makedirs(sys.argv[2], exist_ok=True)
    for inp in sys.argv[3:]:
        out = os.path.join(os.path.abspath(sys.argv[2]), os.path.basename(inp))
        ns = "nftshim-mut-" + uuid.uuid4().hex[:8]
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(sys.argv[0]), "--inside",
                            sys.argv[1], out, os.path.abspath(inp)], check=True)
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    main()
