#!/usr/bin/env python3
"""Turns an iptables `extensions/*.t` file into kernel captures (via capture.py).

Usage: iptpy.py FILE.t OUT.json

For each section (`:CHAINS` and an optional `*table`), every rule line (OK and FAIL
alike) is appended to the section's first chain with the matching binary
(iptables-nft, ip6tables-nft, ebtables-nft, arptables-nft), then the table is listed
with `-S`. Lines running other tools (`@...`) and comments are skipped.
"""
import os
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def binary(path):
    base = os.path.basename(path)
    if base.startswith("libip6t_"):
        return "ip6tables-nft"
    if base.startswith("libebt_"):
        return "ebtables-nft"
    if base.startswith("libarpt_"):
        return "arptables-nft"
    return "iptables-nft"


def commands(path):
    prog = binary(path)
    cmds = []
    chain, table = None, "filter"
    for raw in open(path):
        line = raw.rstrip("\n")
        if not line or line.startswith("#") or line.startswith("@"):
            continue
        if line.startswith(":"):
            chain = line[1:].split(",")[0]
            table = "filter"
            continue
        if line.startswith("*"):
            table = line[1:]
            continue
        if chain is None:
            continue
        rule = line.split(";")[0]
        cmds.append(f"{prog} -t {table} -A {chain} {rule}")
    if prog in ("iptables-nft", "ip6tables-nft"):
        cmds.append(f"{prog}-save")
    else:
        cmds.append("nft list ruleset")
    return [c for c in cmds if c]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    cmds = commands(sys.argv[1])
    subprocess.run([sys.executable, os.path.join(HERE, "capture.py"), sys.argv[2], "--", *cmds], check=True)


if __name__ == "__main__":
    main()
