#!/usr/bin/env python3
"""Turns an nftables tests/py `.t` file into kernel captures (via capture.py).

Usage: nftpy.py FILE.t OUT.json [--max N]

The first table and chain the file declares are created, its sets are added, then every
rule line (ok and fail alike) is added with `nft add rule`, and the ruleset is listed
with handles at the end. Lines marked known-broken upstream (`-`) are skipped.
"""
import os
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def commands(path, limit):
    chains = {}
    tables = []
    sets = []
    rules = []
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not line or line.startswith("#") or line.startswith("-"):
                continue
            if line.startswith(":"):
                name, spec = line[1:].split(";", 1)
                chains[name] = spec
            elif line.startswith("*"):
                fam, table, chs = line[1:].split(";")
                tables.append((fam, table, chs.split(",")))
            elif line.startswith("!"):
                name, rest = line[1:].split(None, 1)
                typ = rest.split(";")[0]
                sets.append((name, typ))
            elif line.startswith("?"):
                continue
            else:
                rules.append(line.split(";")[0])
    if not tables:
        return []
    fam, table, chs = tables[0]
    chain = chs[0]
    cmds = [f"nft add table {fam} {table}"]
    spec = chains.get(chain, "")
    cmds.append(f"nft add chain {fam} {table} {chain} " + shlex.quote("{ " + spec + "; }"))
    for name, typ in sets:
        cmds.append(f"nft add set {fam} {table} {name} " + shlex.quote("{ " + typ + "; }"))
    for r in rules[:limit]:
        cmds.append(f"nft add rule {fam} {table} {chain} " + shlex.quote(r))
    cmds.append("nft -a list ruleset")
    return cmds


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    limit = 1000
    if "--max" in sys.argv:
        limit = int(sys.argv[sys.argv.index("--max") + 1])
    cmds = commands(sys.argv[1], limit)
    if not cmds:
        return
    subprocess.run([sys.executable, os.path.join(HERE, "capture.py"), sys.argv[2], "--", *cmds], check=True)


if __name__ == "__main__":
    main()
