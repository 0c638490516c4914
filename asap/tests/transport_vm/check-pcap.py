#!/usr/bin/env python3
"""Checks the SCTP DATA chunks of a capture (Linux cooked v2 or Ethernet, IPv4) taken during
the transport VM scenario: every chunk must carry PPID 11 in network byte order on stream 3.
Prints a table (source IP, stream, PPID, B/E flags, count) and exits 1 on any other value."""
import collections
import struct
import sys

def packets(path):
    d = open(path, "rb").read()
    magic = struct.unpack("<I", d[:4])[0]
    e = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(e + "I", d[20:24])[0]
    off = 24
    while off + 16 <= len(d):
        _, _, incl, _ = struct.unpack(e + "IIII", d[off:off + 16])
        off += 16
        yield linktype, d[off:off + incl]
        off += incl

def main(path):
    seen = collections.Counter()
    for linktype, p in packets(path):
        if linktype == 276:      # LINUX_SLL2: protocol at 0, header 20 bytes
            proto, ip = struct.unpack(">H", p[0:2])[0], p[20:]
        elif linktype == 1:      # Ethernet
            proto, ip = struct.unpack(">H", p[12:14])[0], p[14:]
        else:
            continue
        if proto != 0x0800 or len(ip) < 20 or ip[9] != 132:
            continue
        ch = ip[(ip[0] & 15) * 4 + 12:]
        while len(ch) >= 4:
            t, fl, ln = struct.unpack(">BBH", ch[:4])
            if t == 0 and len(ch) >= 16:
                _, sid, _, ppid = struct.unpack(">IHHI", ch[4:16])
                seen[(".".join(map(str, ip[12:16])), sid, ppid, fl & 3)] += 1
            if ln < 4:
                break
            ch = ch[(ln + 3) & ~3:]
    bad = 0
    for (src, sid, ppid, be), n in sorted(seen.items()):
        print(f"{src:15} stream {sid} ppid {ppid} B/E {be:02b} x{n}")
        if sid != 3 or ppid != 11:
            bad += 1
    if not seen:
        print("no SCTP DATA chunks found")
        return 1
    return 1 if bad else 0

sys.exit(main(sys.argv[1]))
