#!/usr/bin/env python3
"""Regenerate pcap-fixtures/manifest.toml from the capture files and tshark.

Usage (from the repository root or anywhere):

    python3 pcap-fixtures/make_manifest.py [--oracle DIR]

The descriptions below are hand-written; the message counts are computed with
tshark (run once here, never in the unit tests). Counts are per message, not per
frame: `-E occurrence=a` lists every ASAP/ENRP message of a frame. ENRP over TCP
needs the Lua shim tools/enrp_tcp.lua (tshark 4.0.x does not register ENRP on
tcp.port). SCTP over UDP on a port other than 9899 needs `-d udp.port==N,sctp`.

For the crafted captures it also runs `tshark -T json -x` and stores the raw hex of
every ASAP/ENRP message tshark shows (the "oracle"), so the reader's extracted bytes
can be compared with tshark's without running tshark in the tests. `--oracle DIR`
reads saved `-T json -x` files (NAME.json per capture) instead.

The crafted captures themselves are built by tools/make_crafted.py.
"""

import argparse
import collections
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "tools", "enrp_tcp.lua")

ASAP_NAMES = {
    1: "Registration", 2: "Deregistration", 3: "Registration Response",
    4: "Deregistration Response", 5: "Handle Resolution", 6: "Handle Resolution Response",
    7: "Endpoint Keep-Alive", 8: "Endpoint Keep-Alive Ack", 9: "Endpoint Unreachable",
    10: "Server Announce", 11: "Cookie", 12: "Cookie Echo", 13: "Business Card", 14: "Error",
}
ENRP_NAMES = {
    1: "Presence", 2: "Handle Table Request", 3: "Handle Table Response",
    4: "Handle Update", 5: "List Request", 6: "List Response", 7: "Init Takeover",
    8: "Init Takeover Ack", 9: "Takeover Server", 10: "Error",
}

RSPLIB_ORIGIN = ("Debian rsplib 3.4.4 in a qemu VM with kernel SCTP, tcpdump on lo "
                 "(see README.md, Provenance)")
CRAFTED_ORIGIN = "hand-built by tools/make_crafted.py (byte-reproducible)"
DRAFT_ORIGIN = ("dreibh/rsplib src/wireshark/demo.pcap (2007-01-05, GPL-3.0), "
                "filtered with tshark -Y 'asap || enrp'")

RFC_NOTES = ["every message decodes without error", "every message re-encodes byte-exact"]
CSUM_NOTE = ("as captured on lo: SCTP CRC32c / UDP checksums are 0 or partial "
             "(checksum offload); the reader must not drop packets for bad checksums")


def rsplib_scenario(name, title, description, notes=RFC_NOTES, raw_notes=None):
    """Scenario `name` twice: with the checksums recomputed, and as captured on lo."""
    return [
        (f"rsplib/scenario-{name}.csum-fixed.pcap", description + " (checksums recomputed)",
         RSPLIB_ORIGIN, "rfc", [], None, notes),
        (f"rsplib/scenario-{name}.pcap", f"{title} as captured (checksums not fixed)",
         RSPLIB_ORIGIN, "rfc", [], None, (raw_notes or notes) + [CSUM_NOTE]),
    ]


def crafted(path, description, extra=(), expected=None, notes=RFC_NOTES):
    """A capture under crafted/ (tools/make_crafted.py)."""
    return (f"crafted/{path}", description, CRAFTED_ORIGIN, "rfc", list(extra), expected, notes)


# path, description, origin, era, extra tshark args, reader deviations, notes
FILES = [
    *rsplib_scenario(
        "a", "Scenario A",
        "Scenario A: 1 registrar, 3 Echo PEs, rspterminal PU, hsdump; keep-alives, PE crash, "
        "keep-alive failure, deregistration, loopback-only negative case"),
    *rsplib_scenario(
        "b", "Scenario B",
        "Scenario B: 3 registrars with static peers, PEs at different PRs, PU at PR2, "
        "PR3 killed -> takeover"),
    *rsplib_scenario(
        "b-multicast", "Scenario B multicast",
        "Scenario B with peers found by ENRP Presence multicast; bridge + lo merged"),
    *rsplib_scenario(
        "c", "Scenario C",
        "Scenario C: CalcApp PEs/PU with cookies, Endpoint Unreachable, Cookie Echo failover, "
        "malformed-message probes answered with ASAP/ENRP Error",
        notes=["every message decodes without error except the deliberately malformed probes, "
               "which must give typed errors", "every decodable message re-encodes byte-exact"],
        raw_notes=["same as scenario-c.csum-fixed.pcap"]),
    crafted("asap-registration-sctp.pcap",
            "ASAP Registration over SCTP/IPv4 between ports 40001 and 40002: PPID 11 alone "
            "selects ASAP"),
    crafted("asap-registration-sctp-port3863.pcap",
            "ASAP Registration over SCTP to port 3863, PPID 11"),
    crafted("asap-registration-sctp-over-udp.pcap",
            "ASAP Registration in SCTP over UDP 9899 (RFC 6951)"),
    crafted("asap-registration-sctp-over-udp-port19899.pcap",
            "ASAP Registration in SCTP over UDP port 19899 (needs sctp_over_udp_ports = [19899])",
            extra=["-d", "udp.port==19899,sctp"],
            notes=RFC_NOTES + ["the reader finds it only with UDP port 19899 configured as "
                               "SCTP-over-UDP"]),
    crafted("asap-registration-tcp.pcap",
            "TCP handshake, then one ASAP Registration to TCP port 3863"),
    crafted("enrp-handle-update-tcp-port9901.pcap",
            "TCP handshake, then one ENRP Handle Update to TCP port 9901",
            extra=["-X", "lua_script:" + LUA]),
    crafted("asap-server-announce-udp.pcap",
            "ASAP Server Announce to 239.0.0.50:3863 over UDP"),
    crafted("enrp-presence-udp.pcap", "ENRP Presence to 239.0.0.51:9901 over UDP"),
    crafted("rserpool-mixed-sctp.pcap",
            "ASAP Registration, Registration Response, Handle Resolution, Handle Resolution "
            "Response (PPID 11) and ENRP Presence (R=1), Handle Update (PPID 12) over SCTP"),
    crafted("edge/asap-sctp-two-data-chunks-bundled.pcap",
            "two DATA chunks (Registration + Handle Resolution) bundled in one SCTP packet",
            notes=RFC_NOTES + ["both messages are extracted from frame 1"]),
    crafted("edge/asap-sctp-fragmented-user-message.pcap",
            "one ASAP Registration split into a B and an E DATA fragment (two frames)",
            notes=RFC_NOTES + ["the reassembled 100-byte message is reported at frame 2"]),
    crafted("edge/asap-tcp-two-messages-one-segment.pcap",
            "Registration + Handle Resolution in one TCP segment to port 3863",
            expected={"asap": {1: 1, 5: 1}},
            notes=RFC_NOTES + ["tshark 4.0.17 has no ASAP-over-TCP framing and shows only the "
                               "first message (120 bytes); the reader must split it into "
                               "100 + 20 bytes"]),
    crafted("edge/asap-tcp-message-split-over-segments.pcap",
            "one ASAP Registration split over two TCP segments (40 + 60 bytes)",
            expected={"asap": {1: 1}},
            notes=RFC_NOTES + ["tshark 4.0.17 does not reassemble: it shows a malformed 40-byte "
                               "Registration and a bogus type 0x13 message; the reader must give "
                               "one 100-byte Registration"]),
    crafted("edge/asap-invalid-zero-length-parameter-udp.pcap",
            "ASAP Registration over UDP 3863 whose parameter has Length 0",
            notes=["the message is extracted (12 bytes)",
                   "decoding must fail with a typed error, no hang"]),
    ("third-party/rsplib-demo-2007-draft.asap-enrp-only.pcap",
     "rsplib demo of January 2007 (draft-ietf-rserpool era): 3 registrars (ASAP SCTP ports "
     "2001-2003, ENRP 10001-10003), PEs, PUs; only frames with ASAP or ENRP kept",
     DRAFT_ORIGIN, "draft2007", [], None,
     ["draft2007: parameter type codes and policies differ from RFC 5354/5356",
      "the reader must extract every message (classification by PPID 11/12)",
      "decoding must never panic and must yield typed errors for the draft parameters",
      "tshark 4.0.17 marks all ASAP frames and the ENRP Handle Updates Malformed"]),
]


def tshark_counts(path, extra):
    cmd = ["tshark", "-n", "-r", path] + extra + [
        "-T", "fields", "-e", "frame.protocols", "-e", "asap.message_type",
        "-e", "enrp.message_type", "-E", "occurrence=a", "-E", "aggregator=,",
        "-Y", "asap || enrp"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    counts = {"asap": collections.Counter(), "enrp": collections.Counter()}
    carriers = collections.Counter()
    for line in out.splitlines():
        protos, asap, enrp = (line.split("\t") + ["", "", ""])[:3]
        if "udp:sctp" in protos:
            carrier = "sctp_over_udp"
        elif "sctp" in protos:
            carrier = "sctp"
        elif "tcp" in protos:
            carrier = "tcp"
        else:
            carrier = "udp"
        for proto, field in (("asap", asap), ("enrp", enrp)):
            for v in filter(None, field.split(",")):
                counts[proto][int(v, 0)] += 1
                carriers[carrier] += 1
    return counts, carriers


def oracle_messages(oracle_dir, path, extra):
    if oracle_dir is None:
        if os.sep + "crafted" + os.sep not in path:
            return []
        cmd = ["tshark", "-n", "-r", path] + extra + ["-T", "json", "--no-duplicate-keys", "-x", "-J", "asap enrp"]
        frames = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    else:
        name = os.path.splitext(os.path.basename(path))[0] + ".json"
        f = os.path.join(oracle_dir, name)
        if not os.path.exists(f):
            return []
        frames = json.load(open(f))
    out = []
    # -J "asap enrp" filters the frame layer away; the list holds every frame in order.
    for index, pkt in enumerate(frames):
        layers = pkt["_source"]["layers"]
        frame = index + 1
        for key, proto in (("asap_raw", "asap"), ("enrp_raw", "enrp")):
            if key not in layers:
                continue
            raws = layers[key]
            raws = [r[0] for r in raws] if isinstance(raws[0], list) else [raws[0]]
            for r in raws:
                out.append((frame, proto, r))
    return out


def toml_counts(c):
    if not c:
        return "{}"
    return "{ " + ", ".join(f"{k} = {v}" for k, v in sorted(c.items())) + " }"


def q(s):
    return json.dumps(s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--oracle", default=None,
                    help="directory of saved tshark -T json -x files (default: run tshark)")
    args = ap.parse_args()
    lines = [
        "# pcap-fixtures manifest: generated by make_manifest.py (descriptions hand-written,",
        "# counts from TShark 4.0.17, oracle hex from tshark -T json -x). Do not edit counts by",
        "# hand; rerun the script. Type codes: ASAP RFC 5352 s2.2, ENRP RFC 5353 s2.",
        "#",
        "# [[file]] fields:",
        "#   path        relative to this folder",
        "#   era         rfc | draft2007 (pre-RFC parameter numbering)",
        "#   carriers    carriers of RSerPool messages: sctp | sctp_over_udp | tcp | udp",
        "#   sctp_over_udp_ports  extra UDP ports to treat as SCTP over UDP (RFC 6951)",
        "#   tshark      tshark's per-message counts, protocol -> { type = count }",
        "#   tshark_by_carrier  tshark's message count per carrier",
        "#   expected    the reader's counts where they must differ from tshark's (see notes)",
        "#   oracle      tshark's raw bytes of each message it shows (frame, proto, hex)",
        "",
        f"tshark_version = {q('4.0.17')}",
        "",
    ]
    for path, desc, origin, era, extra, expected, notes in FILES:
        full = os.path.join(HERE, path)
        counts, carriers = tshark_counts(full, extra)
        lines.append("[[file]]")
        lines.append(f"path = {q(path)}")
        lines.append(f"description = {q(desc)}")
        lines.append(f"origin = {q(origin)}")
        lines.append(f"era = {q(era)}")
        lines.append(f"carriers = [{', '.join(q(c) for c in sorted(carriers))}]")
        udp_ports = [int(a.split("==")[1].split(",")[0]) for a in extra if a.startswith("udp.port==")]
        if udp_ports:
            lines.append(f"sctp_over_udp_ports = {udp_ports}")
        if extra:
            lines.append(f"tshark_args = [{', '.join(q(a.replace(HERE + os.sep, '')) for a in extra)}]")
        lines.append("notes = [")
        for n in notes:
            lines.append(f"  {q(n)},")
        lines.append("]")
        lines.append(f"tshark_by_carrier = {toml_counts(carriers)}")
        lines.append("[file.tshark]")
        for proto, names in (("asap", ASAP_NAMES), ("enrp", ENRP_NAMES)):
            c = counts[proto]
            desc_c = ", ".join(f"{names.get(k, hex(k))} {v}" for k, v in sorted(c.items()))
            comment = f"  # {desc_c}" if desc_c else ""
            lines.append(f"{proto} = {toml_counts(c)}{comment}")
        if expected:
            lines.append("[file.expected]")
            for proto in ("asap", "enrp"):
                lines.append(f"{proto} = {toml_counts(expected.get(proto, {}))}")
        for frame, proto, hexs in oracle_messages(args.oracle, full, extra):
            lines.append("[[file.oracle]]")
            lines.append(f"frame = {frame}")
            lines.append(f"proto = {q(proto)}")
            lines.append(f"hex = {q(hexs)}")
        lines.append("")
    with open(os.path.join(HERE, "manifest.toml"), "w") as f:
        f.write("\n".join(lines))
    print("wrote manifest.toml", file=sys.stderr)


if __name__ == "__main__":
    main()
