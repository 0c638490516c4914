//! Encoding and decoding of every parameter of RFC 5354 §3 (and rsplib's Handle Resolution
//! Option), on top of the TLV engine in [`layout`](super::layout).
//!
//! Decoders take a child TLV found by the container walker and return the typed value from
//! [`param`](super::param) / [`policy`](super::policy) / [`cause`](super::cause); nested
//! TLVs (addresses in transports, transports and policy in a Pool Element, causes in an
//! Operation Error) are walked with the same padding rules and recorded in the layout.

use bytes::BufMut;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::cause::{ErrorCause, OperationError};
use super::codes::{CauseCode, ParamType};
use super::error::{DecodeError, EncodeError};
use super::layout::{tlv_head, Child, Dec, Enc, Walk};
use super::param::{
    PoolElementInfo, PoolHandle, ServerInformation, TransportParameter, TransportUse,
};
use super::policy::{Policy, PolicyType, MAX_POLICY_FIELDS};

/// Handle Resolution Option parameter 0x803F (rsplib; draft-dreibholz-rserpool-asap-hropt):
/// how many PEs the PU asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct HandleResolutionOption {
    /// Number of PE entries requested; [`HandleResolutionOption::ALL`] = all.
    pub items: u32,
}

impl HandleResolutionOption {
    /// `0xFFFFFFFF`: "all PEs" (rsplib's RSPGETADDRS_MAX).
    pub const ALL: u32 = 0xFFFF_FFFF;
}

// ---------------------------------------------------------------------------------------
// Binding children to typed slots

/// What a message or container slot accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    PoolHandle,
    PoolElement,
    PeId,
    Policy,
    OpError,
    Cookie,
    PeChecksum,
    ServerInfo,
    HrOption,
    /// DCCP, SCTP, TCP, UDP, UDP-Lite or Opaque transport.
    Transport,
}

impl Kind {
    fn accepts(self, p: ParamType) -> bool {
        match self {
            Kind::PoolHandle => p == ParamType::PoolHandle,
            Kind::PoolElement => p == ParamType::PoolElement,
            Kind::PeId => p == ParamType::PeIdentifier,
            Kind::Policy => p == ParamType::PoolMemberSelectionPolicy,
            Kind::OpError => p == ParamType::OperationError,
            Kind::Cookie => p == ParamType::Cookie,
            Kind::PeChecksum => p == ParamType::PeChecksum,
            Kind::ServerInfo => p == ParamType::ServerInformation,
            Kind::HrOption => p == ParamType::HandleResolutionOption,
            Kind::Transport => is_transport(p),
        }
    }
    fn param(self) -> ParamType {
        match self {
            Kind::PoolHandle => ParamType::PoolHandle,
            Kind::PoolElement => ParamType::PoolElement,
            Kind::PeId => ParamType::PeIdentifier,
            Kind::Policy => ParamType::PoolMemberSelectionPolicy,
            Kind::OpError => ParamType::OperationError,
            Kind::Cookie => ParamType::Cookie,
            Kind::PeChecksum => ParamType::PeChecksum,
            Kind::ServerInfo => ParamType::ServerInformation,
            Kind::HrOption => ParamType::HandleResolutionOption,
            Kind::Transport => ParamType::SctpTransport,
        }
    }
}

fn is_transport(p: ParamType) -> bool {
    matches!(
        p,
        ParamType::DccpTransport
            | ParamType::SctpTransport
            | ParamType::TcpTransport
            | ParamType::UdpTransport
            | ParamType::UdpLiteTransport
            | ParamType::OpaqueTransport
    )
}

/// A slot of a message/container: a kind, mandatory or not, once or repeated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    kind: Kind,
    min: usize,
    many: bool,
}

impl Slot {
    pub(crate) const fn one(kind: Kind) -> Slot {
        Slot {
            kind,
            min: 1,
            many: false,
        }
    }
    pub(crate) const fn opt(kind: Kind) -> Slot {
        Slot {
            kind,
            min: 0,
            many: false,
        }
    }
    pub(crate) const fn many(kind: Kind, min: usize) -> Slot {
        Slot {
            kind,
            min,
            many: true,
        }
    }
}

const MAX_SLOTS: usize = 4;

/// Children bound to slots by [`bind`]: single slots without allocation, the (at most
/// one) repeated slot in a vector.
pub(crate) struct Bound {
    single: [Option<Child>; MAX_SLOTS],
    many: Vec<Child>,
    params: [ParamType; MAX_SLOTS],
    context: &'static str,
    offset: usize,
}

impl Bound {
    /// The child bound to mandatory slot `i` (bind has checked it is there).
    pub(crate) fn req(&self, i: usize) -> Result<&Child, DecodeError> {
        self.opt(i).ok_or(DecodeError::MissingParameter {
            offset: self.offset,
            context: self.context,
            param: self.params.get(i).copied().unwrap_or(ParamType::Unknown(0)),
        })
    }
    /// The child bound to optional slot `i`, if any.
    pub(crate) fn opt(&self, i: usize) -> Option<&Child> {
        self.single.get(i).and_then(Option::as_ref)
    }
    /// The children bound to the repeated slot.
    pub(crate) fn many(&self) -> &[Child] {
        &self.many
    }
    /// The slots in order, for the message tables ([`crate::body::message_body!`]).
    pub(crate) fn slots(&self) -> Slots<'_> {
        Slots {
            bound: self,
            next: 0,
        }
    }
}

/// Walks the slots of a [`Bound`] in order: each call takes the next slot.
pub(crate) struct Slots<'b> {
    bound: &'b Bound,
    next: usize,
}

impl<'b> Slots<'b> {
    fn take(&mut self) -> usize {
        self.next += 1;
        self.next - 1
    }
    /// The next slot, mandatory.
    pub(crate) fn one(&mut self) -> Result<&'b Child, DecodeError> {
        let i = self.take();
        self.bound.req(i)
    }
    /// The next slot, optional.
    pub(crate) fn opt(&mut self) -> Option<&'b Child> {
        let i = self.take();
        self.bound.opt(i)
    }
    /// The next slot, the repeated one.
    pub(crate) fn many(&mut self) -> &'b [Child] {
        self.take();
        self.bound.many()
    }
}

/// Binds children to slots strictly in the order the RFCs give. Children that do not fit
/// the next open slot are extra: unknown types follow their action bits, known ones are
/// kept raw in the layout (so rsplib's extra TLVs and unknown future ones round-trip).
/// At most [`MAX_SLOTS`] slots, at most one of them repeated.
pub(crate) fn bind(
    d: &mut Dec<'_>,
    mut children: Walk,
    slots: &[Slot],
    context: &'static str,
    offset: usize,
) -> Result<Bound, DecodeError> {
    let slots = &slots[..slots.len().min(MAX_SLOTS)];
    let mut b = Bound {
        single: [None; MAX_SLOTS],
        many: Vec::new(),
        params: [ParamType::Unknown(0); MAX_SLOTS],
        context,
        offset,
    };
    let mut counts = [0usize; MAX_SLOTS];
    for (j, slot) in slots.iter().enumerate() {
        b.params[j] = slot.kind.param();
    }
    let mut s = 0;
    while let Some(child) = children.next(d)? {
        let c = &child;
        let p = c.param();
        if !p.is_known() {
            d.extra(c)?;
            continue;
        }
        let mut found = None;
        for (j, slot) in slots.iter().enumerate().skip(s) {
            if slot.kind.accepts(p) && (slot.many || counts[j] == 0) {
                found = Some(j);
                break;
            }
            if counts[j] < slot.min {
                break;
            }
        }
        match found {
            Some(j) => {
                counts[j] += 1;
                if slots[j].many {
                    b.many.push(*c);
                    s = j;
                } else {
                    b.single[j] = Some(*c);
                    s = j + 1;
                }
            }
            None => d.extra(c)?,
        }
    }
    for (j, slot) in slots.iter().enumerate() {
        if counts[j] < slot.min {
            return Err(DecodeError::MissingParameter {
                offset,
                context,
                param: slot.kind.param(),
            });
        }
    }
    Ok(b)
}

/// Runs `f` with the child's index pushed on the decoder path.
fn nested<T>(
    d: &mut Dec<'_>,
    c: &Child,
    f: impl FnOnce(&mut Dec<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    d.path.push(c.idx);
    let r = f(d);
    d.path.pop();
    r
}

fn bad_len(c: &Child, reason: &'static str) -> DecodeError {
    DecodeError::BadParamLength {
        offset: c.offset,
        param: c.param(),
        length: c.len as u16,
        reason,
    }
}

fn fixed_len(c: &Child, len: usize, reason: &'static str) -> Result<(), DecodeError> {
    if c.len == len {
        Ok(())
    } else {
        Err(bad_len(c, reason))
    }
}

// ---------------------------------------------------------------------------------------
// Decoders

/// 0x0009 Pool Handle.
pub(crate) fn dec_pool_handle(d: &Dec<'_>, c: &Child) -> PoolHandle {
    PoolHandle(d.buf[c.value_range()].to_vec())
}

/// 0x000D Cookie.
pub(crate) fn dec_bytes(d: &Dec<'_>, c: &Child) -> Vec<u8> {
    d.buf[c.value_range()].to_vec()
}

/// 0x000E PE Identifier (Length 8).
pub(crate) fn dec_pe_id(d: &Dec<'_>, c: &Child) -> Result<u32, DecodeError> {
    fixed_len(c, 8, "a PE Identifier has Length 8")?;
    d.int_at::<u32>(c.offset + 4, c.offset + 8, "PE identifier")
}

/// 0x000F PE Checksum (Length 6; the 2 bytes after it are the TLV's padding).
pub(crate) fn dec_pe_checksum(d: &Dec<'_>, c: &Child) -> Result<u16, DecodeError> {
    fixed_len(c, 6, "a PE Checksum has Length 6")?;
    d.int_at::<u16>(c.offset + 4, c.offset + 6, "PE checksum")
}

/// 0x803F Handle Resolution Option (Length 8).
pub(crate) fn dec_hr_option(d: &Dec<'_>, c: &Child) -> Result<HandleResolutionOption, DecodeError> {
    fixed_len(c, 8, "a Handle Resolution Option has Length 8")?;
    Ok(HandleResolutionOption {
        items: d.int_at::<u32>(c.offset + 4, c.offset + 8, "items")?,
    })
}

fn dec_address(d: &Dec<'_>, c: &Child) -> Result<IpAddr, DecodeError> {
    let v = c.value_range();
    match c.param() {
        ParamType::Ipv4Address => {
            fixed_len(c, 8, "an IPv4 Address has Length 8")?;
            let mut a = [0u8; 4];
            a.copy_from_slice(&d.buf[v]);
            Ok(IpAddr::V4(Ipv4Addr::from(a)))
        }
        _ => {
            fixed_len(c, 20, "an IPv6 Address has Length 20")?;
            let mut a = [0u8; 16];
            a.copy_from_slice(&d.buf[v]);
            Ok(IpAddr::V6(Ipv6Addr::from(a)))
        }
    }
}

/// Transports 0x0003–0x0007 and 0x0010 (RFC 5354 §3.2–3.6, 3.16).
pub(crate) fn dec_transport(d: &mut Dec<'_>, c: &Child) -> Result<TransportParameter, DecodeError> {
    let v = c.value_range();
    let p = c.param();
    if p == ParamType::OpaqueTransport {
        return Ok(TransportParameter::Opaque {
            data: d.buf[v].to_vec(),
        });
    }
    let fixed = if p == ParamType::DccpTransport { 8 } else { 4 };
    if v.len() < fixed {
        return Err(bad_len(c, "shorter than the transport's fixed fields"));
    }
    let port = d.int_at::<u16>(v.start, v.end, "transport port")?;
    let word = d.int_at::<u16>(v.start + 2, v.end, "transport use / reserved")?;
    let service_code = if p == ParamType::DccpTransport {
        d.int_at::<u32>(v.start + 4, v.end, "DCCP service code")?
    } else {
        0
    };
    let addresses = nested(d, c, |d| {
        let mut walk = Walk::new(v.start + fixed, v.end, p);
        let mut addrs = Vec::new();
        while let Some(child) = walk.next(d)? {
            let ch = &child;
            if matches!(ch.param(), ParamType::Ipv4Address | ParamType::Ipv6Address) {
                if p != ParamType::SctpTransport && !addrs.is_empty() {
                    return Err(DecodeError::InvalidValue {
                        offset: ch.offset,
                        param: p,
                        reason: "more than one address in a single-homed transport",
                    });
                }
                addrs.push(dec_address(d, ch)?);
            } else {
                d.extra(ch)?;
            }
        }
        Ok(addrs)
    })?;
    let Some(&first) = addresses.first() else {
        return Err(DecodeError::InvalidValue {
            offset: c.offset,
            param: p,
            reason: "transport without an address",
        });
    };
    Ok(match p {
        ParamType::SctpTransport => TransportParameter::Sctp {
            port,
            transport_use: TransportUse::from_code(word),
            addresses,
        },
        ParamType::TcpTransport => TransportParameter::Tcp {
            port,
            transport_use: TransportUse::from_code(word),
            address: first,
        },
        ParamType::UdpTransport => TransportParameter::Udp {
            port,
            reserved: word,
            address: first,
        },
        ParamType::UdpLiteTransport => TransportParameter::UdpLite {
            port,
            reserved: word,
            address: first,
        },
        _ => TransportParameter::Dccp {
            port,
            reserved: word,
            service_code,
            address: first,
        },
    })
}

/// 0x0008 Pool Member Selection Policy (RFC 5356 §7). A known policy code whose value
/// length differs from RFC 5356 / rsplib (spec §8.2) decodes as [`Policy::Unknown`] with
/// the raw bytes, so it still round-trips; consumers treat Unknown as "invalid policy".
pub(crate) fn dec_policy(d: &Dec<'_>, c: &Child) -> Result<Policy, DecodeError> {
    let v = c.value_range();
    if v.len() < 4 {
        return Err(bad_len(c, "a policy needs at least the 4-byte policy type"));
    }
    Ok(policy_from_value(&d.buf[v]))
}

fn policy_from_value(v: &[u8]) -> Policy {
    let code = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    let data = &v[4..];
    match PolicyType::from_code(code) {
        Some(t) if t.value_len() == data.len() => {
            // One 32-bit word per field (the length was checked), in wire order.
            let mut words = data
                .chunks_exact(4)
                .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
            Policy::from_fields(t, |_| words.next().unwrap_or_default())
        }
        _ => Policy::Unknown {
            policy_type: code,
            data: data.to_vec(),
        },
    }
}

/// Decodes a complete policy TLV (as carried in cause 0x5).
pub(crate) fn decode_policy_tlv(b: &[u8]) -> Option<Policy> {
    if b.len() < 8
        || u16::from_be_bytes([b[0], b[1]]) != ParamType::PoolMemberSelectionPolicy.code()
    {
        return None;
    }
    let l = usize::from(u16::from_be_bytes([b[2], b[3]]));
    if l < 8 || l > b.len() {
        return None;
    }
    Some(policy_from_value(&b[4..l]))
}

/// Decodes a complete transport TLV (as carried in cause 0x7).
pub(crate) fn decode_transport_tlv(b: &[u8]) -> Option<TransportParameter> {
    let mut d = Dec::new(b);
    let children = d.children(0, b.len(), ParamType::Unknown(0)).ok()?;
    let c = children.first()?;
    if !is_transport(c.param()) {
        return None;
    }
    dec_transport(&mut d, c).ok()
}

/// 0x000A Pool Element (RFC 5354 §3.10). The ASAP transport is optional (rsplib omits it
/// in ASAP messages).
pub(crate) fn dec_pool_element(d: &mut Dec<'_>, c: &Child) -> Result<PoolElementInfo, DecodeError> {
    let v = c.value_range();
    if v.len() < 12 {
        return Err(bad_len(c, "shorter than the Pool Element's 12 fixed bytes"));
    }
    let id = d.int_at::<u32>(v.start, v.end, "PE identifier")?;
    let home_server_id = d.int_at::<u32>(v.start + 4, v.end, "home ENRP server identifier")?;
    let registration_life = d.int_at::<u32>(v.start + 8, v.end, "registration life")? as i32;
    nested(d, c, |d| {
        let children = Walk::new(v.start + 12, v.end, ParamType::PoolElement);
        const SLOTS: [Slot; 3] = [
            Slot::one(Kind::Transport),
            Slot::one(Kind::Policy),
            Slot::opt(Kind::Transport),
        ];
        let b = bind(d, children, &SLOTS, "Pool Element", c.offset)?;
        let user_transport = dec_transport(d, b.req(0)?)?;
        let policy = dec_policy(d, b.req(1)?)?;
        let asap_transport = match b.opt(2) {
            Some(t) => Some(dec_transport(d, t)?),
            None => None,
        };
        Ok(PoolElementInfo {
            id,
            home_server_id,
            registration_life,
            user_transport,
            policy,
            asap_transport,
        })
    })
}

/// 0x000B Server Information (RFC 5354 §3.11).
pub(crate) fn dec_server_info(
    d: &mut Dec<'_>,
    c: &Child,
) -> Result<ServerInformation, DecodeError> {
    let v = c.value_range();
    if v.len() < 4 {
        return Err(bad_len(c, "shorter than the 4-byte server identifier"));
    }
    let server_id = d.int_at::<u32>(v.start, v.end, "server identifier")?;
    nested(d, c, |d| {
        let children = Walk::new(v.start + 4, v.end, ParamType::ServerInformation);
        let b = bind(
            d,
            children,
            &[Slot::one(Kind::Transport)],
            "Server Information",
            c.offset,
        )?;
        Ok(ServerInformation {
            server_id,
            transport: dec_transport(d, b.req(0)?)?,
        })
    })
}

/// 0x000C Operation Error (RFC 5354 §3.12).
pub(crate) fn dec_op_error(d: &mut Dec<'_>, c: &Child) -> Result<OperationError, DecodeError> {
    let v = c.value_range();
    nested(d, c, |d| {
        let mut walk = Walk::new(v.start, v.end, ParamType::OperationError);
        let mut causes = Vec::new();
        while let Some(ch) = walk.next(d)? {
            causes.push(ErrorCause {
                code: CauseCode::from_code(ch.ptype),
                info: d.buf[ch.value_range()].to_vec(),
            });
        }
        Ok(OperationError { causes })
    })
}

// ---------------------------------------------------------------------------------------
// Encoders

/// 0x0009 Pool Handle.
pub(crate) fn enc_pool_handle(e: &mut Enc<'_>, ph: &PoolHandle) -> Result<(), EncodeError> {
    e.tlv_bytes(ParamType::PoolHandle.code(), ph.as_bytes(), "Pool Handle")
}

/// 0x000D Cookie.
pub(crate) fn enc_cookie(e: &mut Enc<'_>, cookie: &[u8]) -> Result<(), EncodeError> {
    e.tlv_bytes(ParamType::Cookie.code(), cookie, "Cookie")
}

/// 0x000E PE Identifier.
pub(crate) fn enc_pe_id(e: &mut Enc<'_>, id: u32) -> Result<(), EncodeError> {
    e.tlv_bytes(
        ParamType::PeIdentifier.code(),
        &id.to_be_bytes(),
        "PE Identifier",
    )
}

/// 0x000F PE Checksum: Length 6 plus 2 padding bytes.
pub(crate) fn enc_pe_checksum(e: &mut Enc<'_>, sum: u16) -> Result<(), EncodeError> {
    e.tlv_bytes(
        ParamType::PeChecksum.code(),
        &sum.to_be_bytes(),
        "PE Checksum",
    )
}

/// 0x803F Handle Resolution Option.
pub(crate) fn enc_hr_option(
    e: &mut Enc<'_>,
    o: &HandleResolutionOption,
) -> Result<(), EncodeError> {
    e.tlv_bytes(
        ParamType::HandleResolutionOption.code(),
        &o.items.to_be_bytes(),
        "Handle Resolution Option",
    )
}

fn enc_address(e: &mut Enc<'_>, a: &IpAddr) -> Result<(), EncodeError> {
    match a {
        IpAddr::V4(a) => e.tlv_bytes(ParamType::Ipv4Address.code(), &a.octets(), "IPv4 Address"),
        IpAddr::V6(a) => e.tlv_bytes(ParamType::Ipv6Address.code(), &a.octets(), "IPv6 Address"),
    }
}

/// The parameter type of a transport.
pub fn transport_param_type(t: &TransportParameter) -> ParamType {
    match t {
        TransportParameter::Sctp { .. } => ParamType::SctpTransport,
        TransportParameter::Tcp { .. } => ParamType::TcpTransport,
        TransportParameter::Udp { .. } => ParamType::UdpTransport,
        TransportParameter::UdpLite { .. } => ParamType::UdpLiteTransport,
        TransportParameter::Dccp { .. } => ParamType::DccpTransport,
        TransportParameter::Opaque { .. } => ParamType::OpaqueTransport,
    }
}

/// Transports 0x0003–0x0007, 0x0010 (RFC 5354 §3.2–3.6, 3.16).
///
/// An SCTP Transport with no address is refused with [`EncodeError::TransportWithoutAddress`]
/// before anything is written: RFC 5354 §3.3 requires at least one address, and our decoder
/// would reject the result.
pub(crate) fn enc_transport(e: &mut Enc<'_>, t: &TransportParameter) -> Result<(), EncodeError> {
    if let TransportParameter::Sctp {
        port, addresses, ..
    } = t
    {
        if addresses.is_empty() {
            return Err(EncodeError::TransportWithoutAddress { port: *port });
        }
    }
    let ptype = transport_param_type(t).code();
    // Opaque is raw bytes; the others have fixed fields (RFC 5354 §3.2–3.6): port (every
    // transport but Opaque has one); Transport Use (SCTP, TCP) or a reserved word (UDP,
    // UDP-Lite, DCCP); DCCP's service code. Then the addresses. The header and the fixed
    // fields are written in one copy.
    let word = match *t {
        TransportParameter::Sctp { transport_use, .. }
        | TransportParameter::Tcp { transport_use, .. } => transport_use.code(),
        TransportParameter::Udp { reserved, .. }
        | TransportParameter::UdpLite { reserved, .. }
        | TransportParameter::Dccp { reserved, .. } => reserved,
        TransportParameter::Opaque { ref data } => {
            e.begin_tlv(ptype, "transport");
            e.buf().put_slice(data);
            return e.end_tlv();
        }
    };
    let mut head = tlv_head::<12>(ptype);
    head[4..6].copy_from_slice(&t.port().unwrap_or_default().to_be_bytes());
    head[6..8].copy_from_slice(&word.to_be_bytes());
    let fixed = match *t {
        TransportParameter::Dccp { service_code, .. } => {
            head[8..12].copy_from_slice(&service_code.to_be_bytes());
            12
        }
        _ => 8,
    };
    e.begin_tlv_head(&head[..fixed], "transport");
    for a in t.address_slice() {
        enc_address(e, a)?;
    }
    e.end_tlv()
}

/// 0x0008 Pool Member Selection Policy.
pub(crate) fn enc_policy(e: &mut Enc<'_>, p: &Policy) -> Result<(), EncodeError> {
    if !matches!(p, Policy::Unknown { .. }) {
        // A known policy: the type word and its 32-bit fields, a short TLV of one copy.
        let mut value = [0u8; 4 + 4 * MAX_POLICY_FIELDS];
        value[..4].copy_from_slice(&p.policy_type().to_be_bytes());
        let mut len = 4;
        for ((_, v), w) in p.fields().zip(value[4..].chunks_exact_mut(4)) {
            w.copy_from_slice(&v.to_be_bytes());
            len += 4;
        }
        return e.tlv_bytes(
            ParamType::PoolMemberSelectionPolicy.code(),
            &value[..len],
            "Pool Member Selection Policy",
        );
    }
    e.begin_tlv(
        ParamType::PoolMemberSelectionPolicy.code(),
        "Pool Member Selection Policy",
    );
    e.buf().put_u32(p.policy_type());
    if let Policy::Unknown { data, .. } = p {
        e.buf().put_slice(data);
    }
    for (_, value) in p.fields() {
        e.buf().put_u32(value);
    }
    e.end_tlv()
}

/// 0x000A Pool Element.
pub(crate) fn enc_pool_element(e: &mut Enc<'_>, pe: &PoolElementInfo) -> Result<(), EncodeError> {
    enc_pool_element_with(e, pe, true)
}

/// 0x000A Pool Element, its ASAP transport (if any) written only when `asap_transport` is
/// true: the one layout of the parameter, also for answers that leave the ASAP transport
/// out as rsplib does in ASAP messages (asap/wire/INTEROP.md §2).
pub(crate) fn enc_pool_element_with(
    e: &mut Enc<'_>,
    pe: &PoolElementInfo,
    asap_transport: bool,
) -> Result<(), EncodeError> {
    let mut head = tlv_head::<16>(ParamType::PoolElement.code());
    head[4..8].copy_from_slice(&pe.id.to_be_bytes());
    head[8..12].copy_from_slice(&pe.home_server_id.to_be_bytes());
    head[12..16].copy_from_slice(&pe.registration_life.to_be_bytes());
    e.begin_tlv_head(&head, "Pool Element");
    enc_transport(e, &pe.user_transport)?;
    enc_policy(e, &pe.policy)?;
    if let (true, Some(t)) = (asap_transport, &pe.asap_transport) {
        enc_transport(e, t)?;
    }
    e.end_tlv()
}

/// 0x000B Server Information.
pub(crate) fn enc_server_info(e: &mut Enc<'_>, si: &ServerInformation) -> Result<(), EncodeError> {
    e.begin_tlv(ParamType::ServerInformation.code(), "Server Information");
    e.buf().put_u32(si.server_id);
    enc_transport(e, &si.transport)?;
    e.end_tlv()
}

/// 0x000C Operation Error.
pub(crate) fn enc_op_error(e: &mut Enc<'_>, oe: &OperationError) -> Result<(), EncodeError> {
    e.begin_tlv(ParamType::OperationError.code(), "Operation Error");
    for c in &oe.causes {
        e.tlv_bytes(c.code.code(), &c.info, "error cause")?;
    }
    e.end_tlv()
}

// ---------------------------------------------------------------------------------------
// Stand-alone parameters

/// Any known parameter on its own (RFC 5354 §3), e.g. to build the cause-specific
/// information of an Operation Error (0x3 Invalid Values carries the offending TLV) or to
/// look inside a [`RawTlv`](super::RawTlv) kept in a layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "param", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Parameter {
    /// 0x0001 / 0x0002 IPv4 or IPv6 Address.
    Address(IpAddr),
    /// 0x0003–0x0007, 0x0010 transports.
    Transport(TransportParameter),
    /// 0x0008 Pool Member Selection Policy.
    Policy(Policy),
    /// 0x0009 Pool Handle.
    PoolHandle(PoolHandle),
    /// 0x000A Pool Element.
    PoolElement(PoolElementInfo),
    /// 0x000B Server Information.
    ServerInformation(ServerInformation),
    /// 0x000C Operation Error.
    OperationError(OperationError),
    /// 0x000D Cookie.
    Cookie(Vec<u8>),
    /// 0x000E PE Identifier.
    PeIdentifier(u32),
    /// 0x000F PE Checksum.
    PeChecksum(u16),
    /// 0x803F Handle Resolution Option.
    HandleResolutionOption(HandleResolutionOption),
}

impl Parameter {
    /// The parameter type.
    pub fn param_type(&self) -> ParamType {
        match self {
            Parameter::Address(IpAddr::V4(_)) => ParamType::Ipv4Address,
            Parameter::Address(IpAddr::V6(_)) => ParamType::Ipv6Address,
            Parameter::Transport(t) => transport_param_type(t),
            Parameter::Policy(_) => ParamType::PoolMemberSelectionPolicy,
            Parameter::PoolHandle(_) => ParamType::PoolHandle,
            Parameter::PoolElement(_) => ParamType::PoolElement,
            Parameter::ServerInformation(_) => ParamType::ServerInformation,
            Parameter::OperationError(_) => ParamType::OperationError,
            Parameter::Cookie(_) => ParamType::Cookie,
            Parameter::PeIdentifier(_) => ParamType::PeIdentifier,
            Parameter::PeChecksum(_) => ParamType::PeChecksum,
            Parameter::HandleResolutionOption(_) => ParamType::HandleResolutionOption,
        }
    }

    /// Appends the canonical TLV (with its padding) to `buf`.
    pub fn encode(&self, buf: &mut bytes::BytesMut) -> Result<(), EncodeError> {
        let layout = super::layout::Layout::default();
        let start = buf.len();
        let mut e = Enc::new(buf, &layout);
        let r = match self {
            Parameter::Address(a) => enc_address(&mut e, a),
            Parameter::Transport(t) => enc_transport(&mut e, t),
            Parameter::Policy(p) => enc_policy(&mut e, p),
            Parameter::PoolHandle(p) => enc_pool_handle(&mut e, p),
            Parameter::PoolElement(p) => enc_pool_element(&mut e, p),
            Parameter::ServerInformation(s) => enc_server_info(&mut e, s),
            Parameter::OperationError(o) => enc_op_error(&mut e, o),
            Parameter::Cookie(c) => enc_cookie(&mut e, c),
            Parameter::PeIdentifier(i) => enc_pe_id(&mut e, *i),
            Parameter::PeChecksum(c) => enc_pe_checksum(&mut e, *c),
            Parameter::HandleResolutionOption(o) => enc_hr_option(&mut e, o),
        };
        if r.is_err() {
            buf.truncate(start);
        }
        r
    }

    /// The canonical TLV bytes (with padding).
    pub fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut b = bytes::BytesMut::new();
        self.encode(&mut b)?;
        Ok(b.to_vec())
    }

    /// Decodes the TLV at the start of `input`; returns it and the bytes it occupies
    /// (Length plus the padding present in `input`). Unknown types give
    /// [`DecodeError::UnrecognizedParameter`] whatever their action bits. Layout details
    /// of nested TLVs are not kept (use [`Message::decode`](super::Message::decode) for
    /// byte-exact work).
    pub fn decode(input: &[u8]) -> Result<(Parameter, usize), DecodeError> {
        let mut d = Dec::new(input);
        let ptype = d.int_at::<u16>(0, input.len(), "parameter type")?;
        let len = usize::from(d.int_at::<u16>(2, input.len(), "parameter length")?);
        let c = Child {
            idx: 0,
            offset: 0,
            ptype,
            len,
        };
        if len < 4 {
            return Err(bad_len(&c, "below the 4-byte header"));
        }
        if len > input.len() {
            return Err(bad_len(&c, "beyond the end of the input"));
        }
        let p = match c.param() {
            ParamType::Ipv4Address | ParamType::Ipv6Address => {
                Parameter::Address(dec_address(&d, &c)?)
            }
            t if is_transport(t) => Parameter::Transport(dec_transport(&mut d, &c)?),
            ParamType::PoolMemberSelectionPolicy => Parameter::Policy(dec_policy(&d, &c)?),
            ParamType::PoolHandle => Parameter::PoolHandle(dec_pool_handle(&d, &c)),
            ParamType::PoolElement => Parameter::PoolElement(dec_pool_element(&mut d, &c)?),
            ParamType::ServerInformation => {
                Parameter::ServerInformation(dec_server_info(&mut d, &c)?)
            }
            ParamType::OperationError => Parameter::OperationError(dec_op_error(&mut d, &c)?),
            ParamType::Cookie => Parameter::Cookie(dec_bytes(&d, &c)),
            ParamType::PeIdentifier => Parameter::PeIdentifier(dec_pe_id(&d, &c)?),
            ParamType::PeChecksum => Parameter::PeChecksum(dec_pe_checksum(&d, &c)?),
            ParamType::HandleResolutionOption => {
                Parameter::HandleResolutionOption(dec_hr_option(&d, &c)?)
            }
            _ => {
                return Err(DecodeError::UnrecognizedParameter {
                    offset: 0,
                    param_type: ptype,
                    report: super::codes::ParamAction::of_param(ptype).reports(),
                    tlv: input[..len].to_vec(),
                })
            }
        };
        Ok((p, super::layout::padded(len).min(input.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asap_msg::{AsapMessage, Registration};
    use crate::message::{Message, Protocol};

    fn sctp(addresses: Vec<IpAddr>) -> TransportParameter {
        TransportParameter::Sctp {
            port: 3863,
            transport_use: TransportUse::DataOnly,
            addresses,
        }
    }

    /// RFC 5354 §3.3: an SCTP Transport carries one or more addresses; the encoder must not
    /// produce one our decoder rejects.
    #[test]
    fn sctp_transport_without_address_is_an_encode_error() {
        let p = Parameter::Transport(sctp(Vec::new()));
        let mut buf = bytes::BytesMut::from(&b"keep"[..]);
        assert_eq!(
            p.encode(&mut buf),
            Err(EncodeError::TransportWithoutAddress { port: 3863 })
        );
        assert_eq!(&buf[..], b"keep", "nothing appended on error");
        assert!(EncodeError::TransportWithoutAddress { port: 3863 }
            .to_string()
            .contains("RFC 5354 §3.3"));

        // One address: encodes, and decodes back to the same value.
        let one = Parameter::Transport(sctp(vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))]));
        let bytes = one.to_vec().expect("encodes");
        assert_eq!(
            bytes,
            [0x00, 0x04, 0x00, 0x10, 0x0f, 0x17, 0x00, 0x00, 0x00, 0x01, 0x00, 0x08, 10, 0, 0, 1]
        );
        assert_eq!(Parameter::decode(&bytes), Ok((one, 16)));
    }

    #[test]
    fn message_with_addressless_sctp_transport_is_refused_whole() {
        let reg = |asap_transport| {
            Message::Asap(AsapMessage::Registration(Registration {
                pool_handle: PoolHandle(b"pool".to_vec()),
                pool_element: PoolElementInfo {
                    id: 0x1234_5678,
                    home_server_id: 0,
                    registration_life: 300_000,
                    user_transport: sctp(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
                    policy: Policy::RoundRobin,
                    asap_transport,
                },
            }))
        };
        let mut buf = bytes::BytesMut::new();
        assert_eq!(
            reg(Some(sctp(Vec::new()))).encode(&mut buf),
            Err(EncodeError::TransportWithoutAddress { port: 3863 })
        );
        assert!(buf.is_empty(), "no partial message left behind");
        let good = reg(Some(sctp(vec![IpAddr::V6(Ipv6Addr::LOCALHOST)])));
        let bytes = good.to_bytes().expect("encodes");
        let back = Message::decode(Protocol::Asap, &bytes).expect("decodes");
        assert_eq!(back.message, good);
    }
}
