//! From frames to RSerPool messages: link → IP → SCTP / TCP / UDP → classification.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::file::FrameSink;
use super::ip::{link_payload, IpLayer, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
use super::sctp::{SctpLayer, UserMessage};
use super::tcp::{self, TcpLayer};
use super::{
    Capture, CaptureOptions, CaptureStats, CapturedMessage, Carrier, Malformed, MalformedReason,
    Proto, PPID_ASAP, PPID_ASAP_DRAFT, PPID_ENRP, PPID_ENRP_DRAFT,
};

/// The state of one pass over a capture.
pub(crate) struct Extractor<'o> {
    options: &'o CaptureOptions,
    ip: IpLayer,
    sctp: SctpLayer,
    tcp: TcpLayer,
    stats: CaptureStats,
    messages: Vec<CapturedMessage>,
}

/// Protocol of a port pair: the destination port first, then the source port.
fn by_port(src: u16, dst: u16, asap: &[u16], enrp: &[u16]) -> Option<Proto> {
    [dst, src].into_iter().find_map(|p| {
        if asap.contains(&p) {
            Some(Proto::Asap)
        } else if enrp.contains(&p) {
            Some(Proto::Enrp)
        } else {
            None
        }
    })
}

impl<'o> Extractor<'o> {
    pub(crate) fn new(options: &'o CaptureOptions) -> Self {
        Extractor {
            options,
            ip: IpLayer::default(),
            sctp: SctpLayer::default(),
            tcp: TcpLayer::default(),
            stats: CaptureStats::default(),
            messages: Vec::new(),
        }
    }

    fn malformed(&mut self, frame: u64, reason: MalformedReason) {
        tracing::debug!(frame, %reason, "unusable packet");
        self.stats.malformed.push(Malformed { frame, reason });
    }

    fn ip_packet(
        &mut self,
        frame: u64,
        ts: Duration,
        packet: &[u8],
    ) -> Result<(), MalformedReason> {
        let Some(t) = self.ip.packet(packet)? else {
            return Ok(());
        };
        match t.proto {
            IPPROTO_SCTP => self.sctp_packet(frame, ts, t.src, t.dst, &t.payload, Carrier::Sctp),
            IPPROTO_UDP => self.udp(frame, ts, t.src, t.dst, &t.payload),
            IPPROTO_TCP => self.tcp(frame, ts, t.src, t.dst, &t.payload),
            _ => {
                self.stats.other_ip_protocols += 1;
                Ok(())
            }
        }
    }

    fn sctp_packet(
        &mut self,
        frame: u64,
        ts: Duration,
        src: IpAddr,
        dst: IpAddr,
        packet: &[u8],
        carrier: Carrier,
    ) -> Result<(), MalformedReason> {
        let mut users = Vec::new();
        let mut problems = Vec::new();
        let result = self.sctp.packet(packet, &mut users, &mut problems);
        for p in problems {
            self.malformed(frame, p);
        }
        for u in users {
            self.user_message(frame, ts, src, dst, carrier, u);
        }
        result
    }

    fn user_message(
        &mut self,
        frame: u64,
        ts: Duration,
        src: IpAddr,
        dst: IpAddr,
        carrier: Carrier,
        u: UserMessage,
    ) {
        let o = self.options;
        let protocol = match u.ppid {
            PPID_ASAP | PPID_ASAP_DRAFT => Some(Proto::Asap),
            PPID_ENRP | PPID_ENRP_DRAFT => Some(Proto::Enrp),
            _ => by_port(
                u.src_port,
                u.dst_port,
                &o.asap_sctp_ports,
                &o.enrp_sctp_ports,
            ),
        };
        let Some(protocol) = protocol else {
            self.stats.non_rserpool_payloads += 1;
            *self.stats.non_rserpool_ppids.entry(u.ppid).or_insert(0) += 1;
            return;
        };
        self.messages.push(CapturedMessage {
            frame,
            timestamp: ts,
            protocol,
            carrier,
            src: SocketAddr::new(src, u.src_port),
            dst: SocketAddr::new(dst, u.dst_port),
            ppid: Some(u.ppid),
            stream: Some(u.stream),
            bytes: u.bytes,
        });
    }

    fn udp(
        &mut self,
        frame: u64,
        ts: Duration,
        src: IpAddr,
        dst: IpAddr,
        datagram: &[u8],
    ) -> Result<(), MalformedReason> {
        if datagram.len() < 8 {
            return Err(MalformedReason::TruncatedHeader {
                layer: "UDP",
                need: 8,
                have: datagram.len(),
            });
        }
        let sport = u16::from_be_bytes([datagram[0], datagram[1]]);
        let dport = u16::from_be_bytes([datagram[2], datagram[3]]);
        // Length 0 is legal for IPv6 jumbograms; otherwise it bounds the payload.
        let len = match usize::from(u16::from_be_bytes([datagram[4], datagram[5]])) {
            0 => datagram.len(),
            n => n,
        };
        if len < 8 || len > datagram.len() {
            return Err(MalformedReason::BadLength {
                layer: "UDP length",
                length: len,
                available: datagram.len(),
            });
        }
        let payload = &datagram[8..len];
        let o = self.options;
        if o.sctp_over_udp_ports.contains(&sport) || o.sctp_over_udp_ports.contains(&dport) {
            return self.sctp_packet(frame, ts, src, dst, payload, Carrier::SctpOverUdp);
        }
        let Some(protocol) = by_port(sport, dport, &o.asap_udp_ports, &o.enrp_udp_ports) else {
            if !payload.is_empty() {
                self.stats.non_rserpool_payloads += 1;
            }
            return Ok(());
        };
        if payload.len() < rserpool_wire::header::HEADER_LEN {
            return Err(MalformedReason::TruncatedHeader {
                layer: "RSerPool over UDP",
                need: 4,
                have: payload.len(),
            });
        }
        self.messages.push(CapturedMessage {
            frame,
            timestamp: ts,
            protocol,
            carrier: Carrier::Udp,
            src: SocketAddr::new(src, sport),
            dst: SocketAddr::new(dst, dport),
            ppid: None,
            stream: None,
            bytes: payload.to_vec(),
        });
        Ok(())
    }

    fn tcp(
        &mut self,
        frame: u64,
        ts: Duration,
        src: IpAddr,
        dst: IpAddr,
        segment: &[u8],
    ) -> Result<(), MalformedReason> {
        let seg = tcp::parse(segment)?;
        let o = self.options;
        let Some(protocol) = by_port(
            seg.src_port,
            seg.dst_port,
            &o.asap_tcp_ports,
            &o.enrp_tcp_ports,
        ) else {
            if !seg.payload.is_empty() {
                self.stats.non_rserpool_payloads += 1;
            }
            return Ok(());
        };
        let src = SocketAddr::new(src, seg.src_port);
        let dst = SocketAddr::new(dst, seg.dst_port);
        let mut out = Vec::new();
        let mut problems = Vec::new();
        self.tcp
            .segment(frame, src, dst, protocol, &seg, &mut out, &mut problems);
        for p in problems {
            self.malformed(frame, p);
        }
        for m in out {
            self.messages.push(CapturedMessage {
                frame,
                timestamp: ts,
                protocol: m.proto,
                carrier: Carrier::Tcp,
                src: m.src,
                dst: m.dst,
                ppid: None,
                stream: None,
                bytes: m.bytes,
            });
        }
        Ok(())
    }

    /// Close the pass: report what never completed and hand over the result.
    pub(crate) fn finish(mut self) -> Capture {
        let last = self.stats.frames;
        for (src, id) in self.ip.incomplete() {
            self.stats.incomplete_at_end += 1;
            self.malformed(last, MalformedReason::IncompleteIpDatagram { src, id });
        }
        self.stats.incomplete_at_end += self.sctp.pending_fragments();
        for (frame, p) in self.tcp.finish() {
            self.stats.incomplete_at_end += 1;
            self.malformed(frame, p);
        }
        self.stats.ip_fragments = self.ip.fragments;
        self.stats.ip_reassembled = self.ip.reassembled;
        self.stats.sctp_packets = self.sctp.packets;
        self.stats.sctp_bad_checksums = self.sctp.bad_checksums;
        self.stats.sctp_duplicate_chunks = self.sctp.duplicates;
        self.stats.tcp_retransmissions = self.tcp.retransmissions;
        self.stats.tcp_out_of_order = self.tcp.out_of_order;
        Capture {
            messages: self.messages,
            stats: self.stats,
        }
    }
}

impl FrameSink for Extractor<'_> {
    fn frame(&mut self, frame: u64, ts: Duration, linktype: u32, data: &[u8]) {
        self.stats.frames += 1;
        let packet = match link_payload(linktype, data) {
            Ok(Some(p)) => p,
            Ok(None) => {
                self.stats.non_ip_frames += 1;
                return;
            }
            Err(e) => return self.malformed(frame, e),
        };
        if let Err(e) = self.ip_packet(frame, ts, packet) {
            self.malformed(frame, e);
        }
    }

    fn truncated(&mut self, reason: String) {
        tracing::warn!(%reason, "capture file is truncated");
        self.stats.truncated = Some(reason);
    }
}
