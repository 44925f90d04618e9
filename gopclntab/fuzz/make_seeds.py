#!/usr/bin/env python3
"""Writes the fuzz seeds (seeds/) from the test programs `cargo xtask test` builds.

Each seed is a bare table in the fuzz target's wrapped form (see fuzz_targets/pclntab.rs):
mode 1 = table only; mode 2 = u16 length, moduledata (words pointing into the table rebased to
the target's TABLE address), table. Usage: python3 make_seeds.py [target/testprogs]
"""
import struct, sys, os

TABLE = 0x200_0000
root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../target/testprogs")
out = os.path.join(os.path.dirname(__file__), "seeds")

def sections(path):
    d = open(path, "rb").read()
    shoff, = struct.unpack_from("<Q", d, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 0x3a)
    hdrs = [struct.unpack_from("<IIQQQQIIQQ", d, shoff + i * shentsize) for i in range(shnum)]
    stroff = hdrs[shstrndx][4]
    res = {}
    for h in hdrs:
        name = d[stroff + h[0]:d.index(b"\0", stroff + h[0])].decode()
        res[name] = (h[3], d[h[4]:h[4] + h[5]])
    return res

for version, name, mode in [("1.19", "symtest-sw", 1), ("1.21.13", "symtest-sw", 1), ("1.27.3", "symtest-sw", 2)]:
    s = sections(os.path.join(root, version, name))
    tab_addr, tab = s[".gopclntab"]
    if mode == 1:
        blob = b"\x01" + tab
    else:
        _, md = s[".go.module"]
        words = list(struct.unpack_from("<%dQ" % (len(md) // 8), md))
        words = [w - tab_addr + TABLE if tab_addr <= w < tab_addr + len(tab) else w for w in words]
        md = struct.pack("<%dQ" % len(words), *words)
        blob = b"\x02" + struct.pack("<H", len(md)) + md + tab
    path = os.path.join(out, "go%s-%s" % (version, name))
    open(path, "wb").write(blob)
    print(path, len(blob))
