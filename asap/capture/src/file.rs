//! Walking the packet records of classic pcap and pcapng files (via `pcap-parser`).

use std::time::Duration;

use pcap_parser::pcap::{
    parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified, parse_pcap_header,
};
use pcap_parser::pcapng::Block;
use pcap_parser::{PcapBlockOwned, PcapError, PcapNGSlice};

use pcap_parser::nom;

use super::CaptureError;

/// pcapng Section Header Block type.
const PCAPNG_SHB: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Receives the packet records of a file in order.
pub(crate) trait FrameSink {
    /// One packet record: 1-based frame number, timestamp, link type, captured bytes.
    fn frame(&mut self, frame: u64, ts: Duration, linktype: u32, data: &[u8]);
    /// The file ended in the middle of a record and the caller allowed that.
    fn truncated(&mut self, reason: String);
}

/// Link types this reader can take apart (see `ip::link_payload`).
pub(crate) fn linktype_supported(linktype: u32) -> bool {
    matches!(
        linktype,
        0 | 1 | 12 | 14 | 101 | 108 | 113 | 228 | 229 | 276
    )
}

fn describe<I>(e: &nom::Err<PcapError<I>>) -> String {
    match e {
        nom::Err::Incomplete(nom::Needed::Size(n)) => format!("{n} more bytes needed"),
        nom::Err::Incomplete(nom::Needed::Unknown) => "more bytes needed".to_string(),
        nom::Err::Error(e) | nom::Err::Failure(e) => match e {
            PcapError::NomError(_, kind) => format!("parse error ({kind:?})"),
            PcapError::OwnedNomError(_, kind) => format!("parse error ({kind:?})"),
            PcapError::HeaderNotRecognized => "header not recognized".to_string(),
            PcapError::Incomplete(n) => format!("incomplete ({n} more bytes needed)"),
            PcapError::UnexpectedEof | PcapError::Eof => "unexpected end of file".to_string(),
            PcapError::BufferTooSmall => "buffer too small".to_string(),
            PcapError::ReadError => "read error".to_string(),
        },
    }
}

fn is_incomplete<I>(e: &nom::Err<PcapError<I>>) -> bool {
    matches!(
        e,
        nom::Err::Incomplete(_)
            | nom::Err::Error(PcapError::Incomplete(_) | PcapError::UnexpectedEof | PcapError::Eof)
            | nom::Err::Failure(
                PcapError::Incomplete(_) | PcapError::UnexpectedEof | PcapError::Eof
            )
    )
}

/// Feed every packet record of `data` (pcap or pcapng) to `sink`.
pub(crate) fn for_each_frame(
    name: &str,
    data: &[u8],
    allow_truncated: bool,
    sink: &mut dyn FrameSink,
) -> Result<(), CaptureError> {
    if data.len() < 4 {
        return Err(CaptureError::NotACapture {
            file: name.to_string(),
            magic: data.to_vec(),
        });
    }
    if data[..4] == PCAPNG_SHB {
        return pcapng(name, data, allow_truncated, sink);
    }
    let magic = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    match magic {
        0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 | 0xa1b2_cd34 | 0x34cd_b2a1 => {
            legacy(name, data, allow_truncated, sink)
        }
        _ => Err(CaptureError::NotACapture {
            file: name.to_string(),
            magic: data[..4].to_vec(),
        }),
    }
}

fn legacy(
    name: &str,
    data: &[u8],
    allow_truncated: bool,
    sink: &mut dyn FrameSink,
) -> Result<(), CaptureError> {
    let (mut rest, header) = parse_pcap_header(data).map_err(|e| CaptureError::BadHeader {
        file: name.to_string(),
        reason: describe(&e),
    })?;
    let linktype = header.network.0 as u32;
    if !linktype_supported(linktype) {
        return Err(CaptureError::UnsupportedLinkType {
            file: name.to_string(),
            linktype,
        });
    }
    let nanos = header.is_nanosecond_precision();
    let parse = if header.is_modified_format() {
        parse_pcap_frame_modified
    } else if header.is_bigendian() {
        parse_pcap_frame_be
    } else {
        parse_pcap_frame
    };
    let mut frame = 0u64;
    while !rest.is_empty() {
        frame += 1;
        match parse(rest) {
            Ok((next, block)) => {
                let sub = if nanos {
                    block.ts_usec
                } else {
                    block.ts_usec.saturating_mul(1000)
                };
                let ts = Duration::from_secs(u64::from(block.ts_sec))
                    + Duration::from_nanos(u64::from(sub));
                sink.frame(frame, ts, linktype, block.data);
                rest = next;
            }
            Err(e) => {
                let at = format!("frame {frame}");
                return record_error(name, frame, &at, &e, allow_truncated, sink);
            }
        }
    }
    Ok(())
}

/// A record of `name` that does not parse: frame number `frame` (`at` names the place in
/// the sink's message). A cut-off file ends the read when `allow_truncated` (reported to
/// the sink) and is [`CaptureError::Truncated`] otherwise; anything else is
/// [`CaptureError::BadRecord`].
fn record_error<I>(
    name: &str,
    frame: u64,
    at: &str,
    e: &nom::Err<PcapError<I>>,
    allow_truncated: bool,
    sink: &mut dyn FrameSink,
) -> Result<(), CaptureError> {
    let reason = describe(e);
    if !is_incomplete(e) {
        return Err(CaptureError::BadRecord {
            file: name.to_string(),
            frame,
            reason,
        });
    }
    if allow_truncated {
        sink.truncated(format!("{at}: {reason}"));
        return Ok(());
    }
    Err(CaptureError::Truncated {
        file: name.to_string(),
        frame,
        reason,
    })
}

/// What an Interface Description Block says about its packets.
struct Interface {
    linktype: u32,
    resolution: Option<u64>,
    offset: i64,
}

fn pcapng(
    name: &str,
    data: &[u8],
    allow_truncated: bool,
    sink: &mut dyn FrameSink,
) -> Result<(), CaptureError> {
    let slice = PcapNGSlice::from_slice(data).map_err(|e| CaptureError::BadHeader {
        file: name.to_string(),
        reason: describe(&e),
    })?;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut frame = 0u64;
    for block in slice {
        let block = match block {
            Ok(PcapBlockOwned::NG(b)) => b,
            Ok(_) => continue,
            Err(e) => {
                let at = format!("after frame {frame}");
                return record_error(name, frame + 1, &at, &e, allow_truncated, sink);
            }
        };
        match block {
            Block::SectionHeader(_) => interfaces.clear(),
            Block::InterfaceDescription(idb) => interfaces.push(Interface {
                linktype: idb.linktype.0 as u32,
                resolution: idb.ts_resolution(),
                offset: idb.ts_offset(),
            }),
            Block::EnhancedPacket(epb) => {
                frame += 1;
                let Some(iface) = interfaces.get(epb.if_id as usize) else {
                    return Err(CaptureError::BadRecord {
                        file: name.to_string(),
                        frame,
                        reason: format!(
                            "packet names interface {} but only {} are described",
                            epb.if_id,
                            interfaces.len()
                        ),
                    });
                };
                let Some(resolution) = iface.resolution.filter(|r| *r > 0) else {
                    return Err(CaptureError::BadRecord {
                        file: name.to_string(),
                        frame,
                        reason: "interface has an invalid timestamp resolution".to_string(),
                    });
                };
                let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                let secs = raw / resolution;
                let frac = raw % resolution;
                let nanos = (u128::from(frac) * 1_000_000_000 / u128::from(resolution)) as u64;
                let base = Duration::from_secs(secs) + Duration::from_nanos(nanos);
                let ts = if iface.offset >= 0 {
                    base + Duration::from_secs(iface.offset as u64)
                } else {
                    base.saturating_sub(Duration::from_secs(iface.offset.unsigned_abs()))
                };
                let caplen = (epb.caplen as usize).min(epb.data.len());
                sink.frame(frame, ts, iface.linktype, &epb.data[..caplen]);
            }
            Block::SimplePacket(spb) => {
                frame += 1;
                let Some(iface) = interfaces.first() else {
                    return Err(CaptureError::BadRecord {
                        file: name.to_string(),
                        frame,
                        reason: "simple packet block before any interface description".to_string(),
                    });
                };
                let len = (spb.origlen as usize).min(spb.data.len());
                sink.frame(frame, Duration::ZERO, iface.linktype, &spb.data[..len]);
            }
            _ => {}
        }
    }
    Ok(())
}
