#!/usr/bin/env python3
"""Hand-build small pcap files carrying RSerPool (ASAP/ENRP) messages.

No third-party dependencies. Encodings follow RFC 5352 (ASAP), RFC 5353 (ENRP),
RFC 5354 (parameters), RFC 5356 (policies), RFC 4960/9260 (SCTP, CRC32c) and
RFC 6951 (SCTP over UDP, port 9899).

Link type: Ethernet (DLT_EN10MB=1) with all-zero MACs, i.e. what
`tcpdump -i lo` writes on Linux; addresses are 127.0.0.1 unless multicast.
"""
import struct, os, sys

# Writes into pcap-fixtures/crafted/ (this file lives in pcap-fixtures/tools/), or the
# directory given as the first argument.
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "crafted")
TS0 = 1700000000  # fixed timestamps -> byte-reproducible files

# ---------------------------------------------------------------- checksums
def _crc32c_table():
    poly = 0x82F63B78
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        t.append(c)
    return t
_T = _crc32c_table()

def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF

def inet_csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF

def ip4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))

# ---------------------------------------------------------------- RSerPool TLVs
def pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)

def tlv(ptype: int, value: bytes) -> bytes:
    """Parameter: Length covers header+value, NOT the trailing padding."""
    return pad4(struct.pack("!HH", ptype, 4 + len(value)) + value)

def msg(mtype: int, flags: int, body: bytes) -> bytes:
    """ASAP/ENRP common header: Type(8) Flags(8) Length(16, incl. header)."""
    return struct.pack("!BBH", mtype, flags, 4 + len(body)) + body

P_IPV4, P_IPV6, P_DCCP, P_SCTP, P_TCP, P_UDP, P_UDPLITE = 1, 2, 3, 4, 5, 6, 7
P_POLICY, P_POOL_HANDLE, P_POOL_ELEMENT, P_SERVER_INFO = 8, 9, 0xA, 0xB
P_OP_ERROR, P_COOKIE, P_PE_ID, P_PE_CHECKSUM = 0xC, 0xD, 0xE, 0xF

def p_ipv4(a):            return tlv(P_IPV4, ip4(a))
def p_ipv6_loopback():    return tlv(P_IPV6, b"\0" * 15 + b"\1")
def p_sctp(port, use, addrs): return tlv(P_SCTP, struct.pack("!HH", port, use) + b"".join(addrs))
def p_tcp(port, use, addrs):  return tlv(P_TCP, struct.pack("!HH", port, use) + b"".join(addrs))
def p_pool_handle(h: bytes):  return tlv(P_POOL_HANDLE, h)
def p_policy(ptype, *vals):   return tlv(P_POLICY, struct.pack("!I", ptype) + b"".join(struct.pack("!I", v) for v in vals))
def p_pool_element(pe_id, home_id, reg_life_ms, user_tp, policy, asap_tp=b""):
    return tlv(P_POOL_ELEMENT, struct.pack("!IIi", pe_id, home_id, reg_life_ms) + user_tp + policy + asap_tp)
def p_server_info(server_id, transport): return tlv(P_SERVER_INFO, struct.pack("!I", server_id) + transport)
def p_pe_checksum(cs):    return tlv(P_PE_CHECKSUM, struct.pack("!H", cs))
def p_pe_id(pe_id):       return tlv(P_PE_ID, struct.pack("!I", pe_id))

# ASAP message types (RFC 5352)
A_REG, A_DEREG, A_REG_RESP, A_DEREG_RESP, A_HR, A_HR_RESP = 1, 2, 3, 4, 5, 6
A_EKA, A_EKA_ACK, A_EU, A_ANNOUNCE, A_COOKIE, A_COOKIE_ECHO, A_BC, A_ERROR = 7, 8, 9, 0xA, 0xB, 0xC, 0xD, 0xE
# ENRP message types (RFC 5353)
E_PRESENCE, E_HT_REQ, E_HT_RESP, E_HANDLE_UPDATE = 1, 2, 3, 4

POOL = b"CalcAppPool"      # 11 bytes -> parameter length 15, 1 byte padding
PE_ID = 0x12345678

def pe_param(policy=None):
    user = p_sctp(5000, 0, [p_ipv4("127.0.0.1"), p_ipv6_loopback()])
    pol = policy if policy is not None else p_policy(0x00000002, 7)       # WRR, weight 7
    asap_tp = p_sctp(5001, 0, [p_ipv4("127.0.0.1")])                       # ASAP transport
    return p_pool_element(PE_ID, 0, 300000, user, pol, asap_tp)

def asap_registration():
    return msg(A_REG, 0, p_pool_handle(POOL) + pe_param())

def asap_registration_response():
    return msg(A_REG_RESP, 0, p_pool_handle(POOL) + p_pe_id(PE_ID))

def asap_handle_resolution():
    return msg(A_HR, 0, p_pool_handle(POOL))

def asap_handle_resolution_response():
    return msg(A_HR_RESP, 0, p_pool_handle(POOL) +
               pe_param(p_policy(0x40000001, 0x40000000)))                  # LU, load 25 %

def asap_server_announce(server_id=0x0000BEEF):
    # Server Identifier follows the common header directly (RFC 5352 2.2.10)
    return msg(A_ANNOUNCE, 0, struct.pack("!I", server_id) +
               p_sctp(3863, 0, [p_ipv4("127.0.0.1")]))

def enrp_presence(sender=0x0000BEEF, receiver=0, reply_required=False):
    body = struct.pack("!II", sender, receiver) + p_pe_checksum(0xABCD) + \
           p_server_info(sender, p_sctp(9901, 0, [p_ipv4("127.0.0.1")]))
    return msg(E_PRESENCE, 1 if reply_required else 0, body)

def enrp_handle_update(sender=0x0000BEEF, receiver=0x0000CAFE, action=0):
    body = struct.pack("!IIHH", sender, receiver, action, 0) + p_pool_handle(POOL) + \
           pe_param(p_policy(0x40000001, 0x40000000))
    return msg(E_HANDLE_UPDATE, 0, body)

# ---------------------------------------------------------------- L2-L4
def ether(payload, ethertype=0x0800):
    return b"\0" * 12 + struct.pack("!H", ethertype) + payload

_ipid = [0]
def ipv4(src, dst, proto, payload, ttl=64):
    _ipid[0] += 1
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), _ipid[0], 0x4000,
                    ttl, proto, 0, ip4(src), ip4(dst))
    h = h[:10] + struct.pack("!H", inet_csum(h)) + h[12:]
    return h + payload

def udp(src, dst, sport, dport, payload):
    length = 8 + len(payload)
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, 17, length)
    h = struct.pack("!HHHH", sport, dport, length, 0)
    cs = inet_csum(pseudo + h + payload) or 0xFFFF
    return struct.pack("!HHHH", sport, dport, length, cs) + payload

def tcp(src, dst, sport, dport, seq, ack, flags, payload=b"", win=65535):
    h = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, win, 0, 0)
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, 6, len(h) + len(payload))
    cs = inet_csum(pseudo + h + payload)
    return h[:16] + struct.pack("!H", cs) + h[18:] + payload

def sctp_data_chunk(tsn, sid, ssn, ppid, data, flags=0x03):
    """DATA chunk (type 0), B+E flags set; Length excludes padding."""
    return pad4(struct.pack("!BBHIHHI", 0, flags, 16 + len(data), tsn, sid, ssn, ppid) + data)

def sctp_packet(sport, dport, vtag, chunks):
    hdr = struct.pack("!HHII", sport, dport, vtag, 0)
    body = b"".join(chunks)
    cs = crc32c(hdr + body)
    # RFC 9260 Appendix A: CRC32c is stored in network byte order of the
    # reflected result, i.e. little-endian byte layout of the integer.
    return struct.pack("!HHI", sport, dport, vtag) + struct.pack("<I", cs) + body

# ---------------------------------------------------------------- pcap writer
def write_pcap(name, frames, linktype=1):
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", TS0 + i, 0, len(fr), len(fr)) + fr)
    print("wrote", path, len(frames), "frames")

LO = "127.0.0.1"

def sctp_frames(messages, sport=34127, dport=3863, vtag=0x11223344):
    """One SCTP/IPv4 packet per (ppid, message)."""
    out = []
    for i, (ppid, m) in enumerate(messages):
        out.append(ether(ipv4(LO, LO, 132, sctp_packet(sport, dport, vtag,
                   [sctp_data_chunk(1000 + i, 0, i, ppid, m)]))))
    return out

def sctp_over_udp_frames(messages, udp_port=9899, sport=34127, dport=3863, vtag=0x11223344):
    out = []
    for i, (ppid, m) in enumerate(messages):
        sp = sctp_packet(sport, dport, vtag, [sctp_data_chunk(1000 + i, 0, i, ppid, m)])
        out.append(ether(ipv4(LO, LO, 17, udp(LO, LO, udp_port, udp_port, sp))))
    return out

def tcp_frames(messages, sport=40000, dport=3863):
    """3-way handshake, then one message per segment (no framing exists)."""
    c_isn, s_isn = 1000, 5000
    out = [ether(ipv4(LO, LO, 6, tcp(LO, LO, sport, dport, c_isn, 0, 0x02))),
           ether(ipv4(LO, LO, 6, tcp(LO, LO, dport, sport, s_isn, c_isn + 1, 0x12))),
           ether(ipv4(LO, LO, 6, tcp(LO, LO, sport, dport, c_isn + 1, s_isn + 1, 0x10)))]
    seq = c_isn + 1
    for m in messages:
        out.append(ether(ipv4(LO, LO, 6, tcp(LO, LO, sport, dport, seq, s_isn + 1, 0x18, m))))
        seq += len(m)
    return out

def edge_cases():
    """Edge cases documenting tshark 4.0.17 behaviour (see README)."""
    global OUT
    base = OUT
    OUT = os.path.join(base, "edge")
    os.makedirs(OUT, exist_ok=True)
    reg, hr = asap_registration(), asap_handle_resolution()
    # TCP: two ASAP messages in one segment -> tshark shows only the first (no framing on TCP)
    write_pcap("asap-tcp-two-messages-one-segment.pcap", tcp_frames([reg + hr]))
    # TCP: one ASAP message split over two segments -> tshark reports Malformed (no reassembly)
    write_pcap("asap-tcp-message-split-over-segments.pcap", tcp_frames([reg[:40], reg[40:]]))
    # SCTP: two DATA chunks (two ASAP messages) bundled in one packet -> both decoded
    pkt = sctp_packet(34127, 3863, 0x11223344, [sctp_data_chunk(1, 0, 0, 11, reg), sctp_data_chunk(2, 0, 1, 11, hr)])
    write_pcap("asap-sctp-two-data-chunks-bundled.pcap", [ether(ipv4(LO, LO, 132, pkt))])
    # SCTP: one ASAP message fragmented into two DATA chunks (B, then E) -> reassembled by tshark
    p1 = sctp_packet(34127, 3863, 0x11223344, [sctp_data_chunk(10, 0, 0, 11, reg[:48], flags=0x02)])
    p2 = sctp_packet(34127, 3863, 0x11223344, [sctp_data_chunk(11, 0, 0, 11, reg[48:], flags=0x01)])
    write_pcap("asap-sctp-fragmented-user-message.pcap", [ether(ipv4(LO, LO, 132, p1)), ether(ipv4(LO, LO, 132, p2))])
    # Invalid: parameter with Length 0 -> tshark: [Malformed Packet: ASAP] (no hang)
    bad = msg(A_REG, 0, struct.pack("!HH", P_POOL_HANDLE, 0) + b"\0" * 4)
    write_pcap("asap-invalid-zero-length-parameter-udp.pcap", [ether(ipv4(LO, LO, 17, udp(LO, LO, 3863, 3863, bad)))])
    OUT = base

if __name__ == "__main__":
    reg = asap_registration()
    open(os.path.join(OUT, "asap-registration.bin"), "wb").write(reg)

    # (a) SCTP over IPv4; PPID 11 on a non-registered port pair -> PPID dispatch only
    write_pcap("asap-registration-sctp.pcap", sctp_frames([(11, reg)], sport=40001, dport=40002))
    # (a') same on the IANA ASAP port 3863
    write_pcap("asap-registration-sctp-port3863.pcap", sctp_frames([(11, reg)]))
    # (b) SCTP over UDP (RFC 6951), UDP 9899 <-> 9899
    write_pcap("asap-registration-sctp-over-udp.pcap", sctp_over_udp_frames([(11, reg)]))
    # (b') SCTP over UDP on a non-standard UDP port (needs -d udp.port==N,sctp)
    write_pcap("asap-registration-sctp-over-udp-port19899.pcap",
               sctp_over_udp_frames([(11, reg)], udp_port=19899))
    # (c) TCP to port 3863 (ASAP registers tcp.port 3863; no framing)
    write_pcap("asap-registration-tcp.pcap", tcp_frames([reg]))
    # ENRP over TCP port 9901 (ENRP does NOT register on tcp.port)
    write_pcap("enrp-handle-update-tcp-port9901.pcap", tcp_frames([enrp_handle_update()], dport=9901))
    # UDP announces: ASAP Server Announce -> 239.0.0.50:3863, ENRP Presence -> 239.0.0.51:9901
    write_pcap("asap-server-announce-udp.pcap",
               [ether(ipv4(LO, "239.0.0.50", 17, udp(LO, "239.0.0.50", 3863, 3863, asap_server_announce()), ttl=1))])
    write_pcap("enrp-presence-udp.pcap",
               [ether(ipv4(LO, "239.0.0.51", 17, udp(LO, "239.0.0.51", 9901, 9901, enrp_presence()), ttl=1))])
    # A small mixed SCTP session: ASAP (PPID 11) and ENRP (PPID 12)
    write_pcap("rserpool-mixed-sctp.pcap",
               sctp_frames([(11, reg), (11, asap_registration_response()),
                            (11, asap_handle_resolution()), (11, asap_handle_resolution_response())]) +
               sctp_frames([(12, enrp_presence(reply_required=True)), (12, enrp_handle_update())],
                           sport=9901, dport=9901, vtag=0x55667788))
    edge_cases()
