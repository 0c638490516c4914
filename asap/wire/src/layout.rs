//! The TLV engine: length/padding rules of RFC 5354 §2–§3 and the [`Layout`] that makes
//! re-encoding byte-exact.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        Parameter Type         |       Parameter Length        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! \                       Parameter Value                         \
//! /                               +-------------------------------/
//! \                               |      Padding (0-3 bytes)      \
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! A typed message says *what* was sent; the [`Layout`] records *how*, where the wire
//! allows a choice the typed model does not capture:
//! * TLVs the receiver did not bind to a typed field (unknown "skip" parameters and extra
//!   known ones), kept as raw bytes at their position ([`QuirkKind::ExtraTlv`]);
//! * containers (the message, or a nested parameter such as a Pool Element or an
//!   Operation Error) whose Length **excludes** the padding of their last child, as
//!   RFC 5354 §2 words it ([`QuirkKind::PaddingExcluded`]). Our encoder's default is what
//!   rsplib emits: the Length of a container covers its last child's padding;
//! * message flag bits the RFCs leave undefined.
//!
//! Positions are paths of child indices: `[]` is the message, `[2]` its third TLV,
//! `[2, 0]` the first TLV nested in that one. Indices count every child TLV, typed or raw.

use bytes::{BufMut, BytesMut};
use nom::number::complete::{be_u16, be_u32, be_u8};
use nom::Parser;
use serde::Serialize;

use super::cause::ErrorCause;
use super::codes::ParamType;
use super::error::{DecodeError, EncodeError, Warning};

pub(crate) use super::header::padded;

/// A TLV kept as raw bytes: its type (action bits included) and value (without padding).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawTlv {
    /// The 16-bit parameter type.
    pub param_type: u16,
    /// The value (Length − 4 bytes).
    pub value: Vec<u8>,
}

impl RawTlv {
    /// The TLV bytes without padding (type, length, value).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(4 + self.value.len());
        v.extend_from_slice(&self.param_type.to_be_bytes());
        v.extend_from_slice(&((4 + self.value.len()).min(0xFFFF) as u16).to_be_bytes());
        v.extend_from_slice(&self.value);
        v
    }
}

impl RawTlv {
    /// The typed view of this TLV if its type is known and it decodes.
    pub fn decode_known(&self) -> Option<super::tlv::Parameter> {
        super::tlv::Parameter::decode(&self.to_vec())
            .ok()
            .map(|(p, _)| p)
    }
}

impl Serialize for RawTlv {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let decoded = self.decode_known();
        let mut st = s.serialize_struct("RawTlv", 4)?;
        st.serialize_field("param_type", &ParamType::from_code(self.param_type))?;
        st.serialize_field("length", &(4 + self.value.len()))?;
        st.serialize_field("value", &hex(&self.value))?;
        if let Some(p) = decoded {
            st.serialize_field("decoded", &p)?;
        }
        st.end()
    }
}

/// Lower-case hex of some bytes (used for raw values in JSON).
pub(crate) fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// One recorded wire choice (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Quirk {
    /// Position: child indices from the message down.
    pub path: Vec<u16>,
    /// What was recorded there.
    pub kind: QuirkKind,
}

/// The kinds of recorded wire choices.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum QuirkKind {
    /// A TLV not bound to a typed field, re-emitted verbatim at this child index.
    ExtraTlv(RawTlv),
    /// The container's Length excludes its last child's padding (RFC 5354 §2 wording).
    PaddingExcluded,
}

/// How a decoded message was laid out on the wire, beyond its typed content.
/// [`Layout::default()`] is our canonical (rsplib-compatible) encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Layout {
    /// Message flag bits the message type does not define (RFC 5354 §4: sent as 0,
    /// ignored on receipt), kept for byte-exact re-encoding.
    pub unused_flags: u8,
    /// Recorded choices, in wire order.
    pub quirks: Vec<Quirk>,
}

impl Layout {
    /// True for the canonical layout.
    pub fn is_canonical(&self) -> bool {
        self.unused_flags == 0 && self.quirks.is_empty()
    }

    /// The unbound TLVs at message level (unknown "skip" parameters and extra known
    /// ones), with their child index.
    pub fn extra_tlvs(&self) -> impl Iterator<Item = (u16, &RawTlv)> {
        self.quirks
            .iter()
            .filter_map(|q| match (&q.kind, q.path.as_slice()) {
                (QuirkKind::ExtraTlv(t), [i]) => Some((*i, t)),
                _ => None,
            })
    }
}

// ---------------------------------------------------------------------------------------
// Encoder

/// Values up to this long are written by [`Enc::tlv_bytes`] with their header in one copy
/// (addresses, identifiers, known policies, most pool handles).
const SHORT_VALUE: usize = 28;

/// The first `N` bytes of a TLV: its Type, a zero Length (set when the TLV is closed, or by
/// the caller of [`Enc::leaf`]) and zeros for the fixed fields the caller fills in. `N >= 4`.
pub(crate) fn tlv_head<const N: usize>(param_type: u16) -> [u8; N] {
    let mut h = [0u8; N];
    h[..2].copy_from_slice(&param_type.to_be_bytes());
    h
}

struct Frame {
    start: usize,
    next_idx: u16,
    last_pad: usize,
    what: &'static str,
}

/// Streaming TLV writer that applies a [`Layout`].
pub(crate) struct Enc<'a> {
    buf: &'a mut BytesMut,
    quirks: &'a [Quirk],
    path: Vec<u16>,
    frames: Vec<Frame>,
    /// Length of a raw TLV from the layout that does not fit its 16-bit Length.
    raw_too_long: Option<usize>,
}

impl<'a> Enc<'a> {
    pub(crate) fn new(buf: &'a mut BytesMut, layout: &'a Layout) -> Self {
        Enc {
            buf,
            quirks: &layout.quirks,
            // The path is only needed to find quirks (none in the canonical layout).
            path: Vec::new(),
            // message > Pool Element > transport > address is the deepest nesting.
            frames: Vec::with_capacity(6),
            raw_too_long: None,
        }
    }

    pub(crate) fn buf(&mut self) -> &mut BytesMut {
        self.buf
    }

    /// Opens the frame of a message or TLV starting at the current end of the buffer.
    fn open_frame(&mut self, what: &'static str) {
        self.frames.push(Frame {
            start: self.buf.len(),
            next_idx: 0,
            last_pad: 0,
            what,
        });
    }

    /// Starts the message: header with a placeholder Length.
    pub(crate) fn begin_message(&mut self, type_code: u8, flags: u8, what: &'static str) {
        self.open_frame(what);
        self.buf.put_slice(&[type_code, flags, 0, 0]);
    }

    /// Finishes the message: remaining extra TLVs, Length, trailing padding.
    pub(crate) fn end_message(&mut self) -> Result<(), EncodeError> {
        self.close_frame()?;
        match self.raw_too_long {
            Some(length) => Err(EncodeError::TooLong {
                what: "raw TLV from the layout",
                length,
            }),
            None => Ok(()),
        }
    }

    /// Starts a child TLV of the current container.
    pub(crate) fn begin_tlv(&mut self, param_type: u16, what: &'static str) {
        self.begin_tlv_head(&tlv_head::<4>(param_type), what);
    }

    /// Starts a child TLV of the current container whose first bytes are `head`: the TLV
    /// header (Type; the Length is set by [`end_tlv`](Self::end_tlv)) and the fixed fields
    /// of its value, written in one copy ([`tlv_head`]).
    pub(crate) fn begin_tlv_head(&mut self, head: &[u8], what: &'static str) {
        self.flush_extras_at_next();
        if !self.quirks.is_empty() {
            let idx = self.frames.last().map_or(0, |f| f.next_idx);
            self.path.push(idx);
        }
        self.open_frame(what);
        self.buf.put_slice(head);
    }

    /// Finishes the current TLV.
    pub(crate) fn end_tlv(&mut self) -> Result<(), EncodeError> {
        self.close_frame()?;
        if !self.quirks.is_empty() {
            self.path.pop();
        }
        Ok(())
    }

    /// Writes a TLV whose value is the given bytes.
    pub(crate) fn tlv_bytes(
        &mut self,
        param_type: u16,
        value: &[u8],
        what: &'static str,
    ) -> Result<(), EncodeError> {
        if value.len() <= SHORT_VALUE {
            let mut tlv = [0u8; 4 + SHORT_VALUE];
            tlv[..4].copy_from_slice(&tlv_head::<4>(param_type));
            tlv[2..4].copy_from_slice(&((4 + value.len()) as u16).to_be_bytes());
            tlv[4..4 + value.len()].copy_from_slice(value);
            return self.leaf(&tlv[..4 + value.len()], what);
        }
        self.begin_tlv(param_type, what);
        self.buf.put_slice(value);
        self.end_tlv()
    }

    /// Writes a TLV given whole (`tlv`: header with its Length, which is `tlv.len()`, and
    /// value; a container's children already padded), then its padding. In the canonical
    /// layout it is one copy; with quirks it goes through the frame like any TLV (extras
    /// before it are placed, its Length recomputed).
    pub(crate) fn leaf(&mut self, tlv: &[u8], what: &'static str) -> Result<(), EncodeError> {
        if !self.quirks.is_empty() && tlv.len() >= 4 {
            self.begin_tlv_head(&tlv[..4], what);
            self.buf.put_slice(&tlv[4..]);
            return self.end_tlv();
        }
        self.buf.put_slice(tlv);
        let pad = padded(tlv.len()) - tlv.len();
        if pad > 0 {
            self.buf.put_bytes(0, pad);
        }
        if let Some(parent) = self.frames.last_mut() {
            parent.next_idx = parent.next_idx.saturating_add(1);
            parent.last_pad = pad;
        }
        Ok(())
    }

    fn close_frame(&mut self) -> Result<(), EncodeError> {
        self.flush_extras_rest();
        let excluded = self.has_quirk_here();
        let Some(frame) = self.frames.pop() else {
            return Ok(());
        };
        let mut len = self.buf.len() - frame.start;
        if excluded {
            len -= frame.last_pad.min(len);
        }
        if len > 0xFFFF {
            return Err(EncodeError::TooLong {
                what: frame.what,
                length: len,
            });
        }
        let at = frame.start + 2;
        self.buf[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
        let pad = padded(self.buf.len() - frame.start) - (self.buf.len() - frame.start);
        if pad > 0 {
            self.buf.put_bytes(0, pad);
        }
        // Bytes after this TLV's Length: its own padding, plus its last child's padding
        // when that is excluded.
        let trailing = self.buf.len() - frame.start - len;
        if let Some(parent) = self.frames.last_mut() {
            parent.next_idx = parent.next_idx.saturating_add(1);
            parent.last_pad = trailing;
        }
        Ok(())
    }

    fn has_quirk_here(&self) -> bool {
        !self.quirks.is_empty()
            && self
                .quirks
                .iter()
                .any(|q| q.kind == QuirkKind::PaddingExcluded && q.path == self.path)
    }

    fn extra_at(&self, idx: u16) -> Option<&'a RawTlv> {
        let quirks: &'a [Quirk] = self.quirks;
        quirks.iter().find_map(|q| match &q.kind {
            QuirkKind::ExtraTlv(t)
                if q.path.len() == self.path.len() + 1
                    && q.path[..self.path.len()] == self.path[..]
                    && q.path[self.path.len()] == idx =>
            {
                Some(t)
            }
            _ => None,
        })
    }

    fn write_raw(&mut self, t: &RawTlv) {
        if 4 + t.value.len() > 0xFFFF {
            self.raw_too_long = Some(4 + t.value.len());
        }
        let start = self.buf.len();
        self.buf.put_u16(t.param_type);
        self.buf.put_u16((4 + t.value.len()).min(0xFFFF) as u16);
        self.buf.put_slice(&t.value);
        let len = self.buf.len() - start;
        let pad = padded(len) - len;
        self.buf.put_bytes(0, pad);
        if let Some(parent) = self.frames.last_mut() {
            parent.next_idx = parent.next_idx.saturating_add(1);
            parent.last_pad = pad;
        }
    }

    fn flush_extras_at_next(&mut self) {
        if self.quirks.is_empty() {
            return;
        }
        while let Some(idx) = self.frames.last().map(|f| f.next_idx) {
            match self.extra_at(idx) {
                Some(t) => self.write_raw(t),
                None => break,
            }
        }
    }

    fn flush_extras_rest(&mut self) {
        if self.quirks.is_empty() {
            return;
        }
        loop {
            let Some(next) = self.frames.last().map(|f| f.next_idx) else {
                return;
            };
            let quirks: &'a [Quirk] = self.quirks;
            let depth = self.path.len();
            let best = quirks
                .iter()
                .filter_map(|q| match &q.kind {
                    QuirkKind::ExtraTlv(t)
                        if q.path.len() == depth + 1
                            && q.path[..depth] == self.path[..]
                            && q.path[depth] >= next =>
                    {
                        Some((q.path[depth], t))
                    }
                    _ => None,
                })
                .min_by_key(|(i, _)| *i);
            match best {
                Some((i, t)) => {
                    if let Some(f) = self.frames.last_mut() {
                        f.next_idx = i;
                    }
                    self.write_raw(t);
                }
                None => return,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Decoder

/// One child TLV found while walking a container.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Child {
    /// Index among the container's children.
    pub idx: u16,
    /// Offset of the TLV header.
    pub offset: usize,
    /// Type (action bits included).
    pub ptype: u16,
    /// Length field (header + value, no padding).
    pub len: usize,
}

impl Child {
    pub(crate) fn value_range(&self) -> std::ops::Range<usize> {
        self.offset + 4..self.offset + self.len
    }
    pub(crate) fn param(&self) -> ParamType {
        ParamType::from_code(self.ptype)
    }
}

type NomErr<'b> = nom::error::Error<&'b [u8]>;

/// The big-endian integers [`Dec::int_at`] reads, each with its size and nom parser.
pub(crate) trait BeInt: Sized {
    /// Its size on the wire in bytes.
    const LEN: usize;
    /// nom's big-endian parser for it.
    fn parse(input: &[u8]) -> nom::IResult<&[u8], Self, NomErr<'_>>;
}

macro_rules! be_int {
    ($($T:ty: $parser:ident),*) => {$(
        impl BeInt for $T {
            const LEN: usize = std::mem::size_of::<$T>();
            fn parse(input: &[u8]) -> nom::IResult<&[u8], Self, NomErr<'_>> {
                $parser(input)
            }
        }
    )*};
}

be_int!(u8: be_u8, u16: be_u16, u32: be_u32);

/// Walks the child TLVs in the region `start..end` of a container without allocating
/// (RFC 5354 §2): children are stepped over by their padded length; the last child's
/// padding may lie outside `end` (recorded as [`QuirkKind::PaddingExcluded`] for the
/// container, whose path must be the decoder's current path).
pub(crate) struct Walk {
    pos: usize,
    end: usize,
    idx: u16,
    container: ParamType,
}

impl Walk {
    pub(crate) fn new(start: usize, end: usize, container: ParamType) -> Self {
        Walk {
            pos: start,
            end,
            idx: 0,
            container,
        }
    }

    /// The next child, `None` at the end of the container.
    pub(crate) fn next(&mut self, d: &mut Dec<'_>) -> Result<Option<Child>, DecodeError> {
        let (pos, end, container) = (self.pos, self.end, self.container);
        if pos >= end {
            return Ok(None);
        }
        d.need(pos, 4, end, "parameter header")?;
        let (ptype, len) = (be_u16::<_, NomErr<'_>>, be_u16)
            .parse(&d.buf[pos..end])
            .map(|(_, v)| v)
            .map_err(|_| d.trunc(pos, 4, end, "parameter header"))?;
        // Causes inside an Operation Error share the TLV shape but not the type space.
        let param = if container == ParamType::OperationError {
            container
        } else {
            ParamType::from_code(ptype)
        };
        let len_us = usize::from(len);
        if len_us < 4 {
            return Err(DecodeError::BadParamLength {
                offset: pos,
                param,
                length: len,
                reason: "below the 4-byte header",
            });
        }
        if pos + len_us > end {
            return Err(DecodeError::BadParamLength {
                offset: pos,
                param,
                length: len,
                reason: if container == ParamType::Unknown(0) {
                    "beyond the message length"
                } else {
                    "beyond the enclosing parameter"
                },
            });
        }
        let next = pos + padded(len_us);
        let child = Child {
            idx: self.idx,
            offset: pos,
            ptype,
            len: len_us,
        };
        self.idx = self.idx.saturating_add(1);
        if next > end {
            if pos + len_us != end {
                return Err(DecodeError::BadParamLength {
                    offset: pos,
                    param,
                    length: len,
                    reason: "enclosing length ends inside this parameter's padding",
                });
            }
            // The last child's padding lies outside the container's Length: it is the
            // container's own padding, checked by whoever walks the container.
            d.quirks.push(Quirk {
                path: d.path.clone(),
                kind: QuirkKind::PaddingExcluded,
            });
            self.pos = end;
        } else {
            d.check_padding(pos + len_us, next);
            self.pos = next;
        }
        Ok(Some(child))
    }
}

/// Decoding state: the message bytes, the current path and what was recorded so far.
pub(crate) struct Dec<'b> {
    pub buf: &'b [u8],
    pub path: Vec<u16>,
    pub quirks: Vec<Quirk>,
    pub reports: Vec<ErrorCause>,
    pub warnings: Vec<Warning>,
}

impl<'b> Dec<'b> {
    pub(crate) fn new(buf: &'b [u8]) -> Self {
        Dec {
            buf,
            path: Vec::new(),
            quirks: Vec::new(),
            reports: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn need(
        &self,
        off: usize,
        n: usize,
        end: usize,
        what: &'static str,
    ) -> Result<(), DecodeError> {
        if off
            .checked_add(n)
            .is_some_and(|e| e <= end && e <= self.buf.len())
        {
            Ok(())
        } else {
            Err(self.trunc(off, n, end, what))
        }
    }

    /// Reads the big-endian integer `T` (`u8`, `u16`, `u32`) at `off`, not beyond `end`.
    pub(crate) fn int_at<T: BeInt>(
        &self,
        off: usize,
        end: usize,
        what: &'static str,
    ) -> Result<T, DecodeError> {
        self.need(off, T::LEN, end, what)?;
        T::parse(&self.buf[off..end])
            .map(|(_, v)| v)
            .map_err(|_| self.trunc(off, T::LEN, end, what))
    }

    fn trunc(&self, off: usize, n: usize, end: usize, what: &'static str) -> DecodeError {
        DecodeError::Truncated {
            offset: off,
            what,
            needed: n,
            available: end.min(self.buf.len()).saturating_sub(off),
        }
    }

    /// Checks that padding bytes are zero; records a warning otherwise.
    pub(crate) fn check_padding(&mut self, from: usize, to: usize) {
        let to = to.min(self.buf.len());
        if let Some(i) = self.buf[from.min(to)..to].iter().position(|&b| b != 0) {
            self.warnings
                .push(Warning::NonZeroPadding { offset: from + i });
        }
    }

    /// Splits the region `start..end` of a container into child TLVs (see [`Walk`]).
    pub(crate) fn children(
        &mut self,
        start: usize,
        end: usize,
        container: ParamType,
    ) -> Result<Vec<Child>, DecodeError> {
        let mut w = Walk::new(start, end, container);
        let mut out = Vec::new();
        while let Some(c) = w.next(self)? {
            out.push(c);
        }
        Ok(out)
    }

    /// Records a child as an unbound TLV, honouring the action bits of unknown types
    /// (RFC 5354 §3): stop → error; skip → kept raw; report → Unrecognized Parameter.
    pub(crate) fn extra(&mut self, c: &Child) -> Result<(), DecodeError> {
        let tlv = self.buf[c.offset..c.offset + c.len].to_vec();
        if !c.param().is_known() {
            let action = super::codes::ParamAction::of_param(c.ptype);
            if !action.skips() {
                return Err(DecodeError::UnrecognizedParameter {
                    offset: c.offset,
                    param_type: c.ptype,
                    report: action.reports(),
                    tlv,
                });
            }
            tracing::debug!(
                offset = c.offset,
                param_type = c.ptype,
                report = action.reports(),
                "skipping unrecognized parameter"
            );
            if action.reports() {
                self.reports.push(ErrorCause::new(
                    super::codes::CauseCode::UnrecognizedParameter,
                    tlv.clone(),
                ));
            }
        }
        let mut path = self.path.clone();
        path.push(c.idx);
        self.quirks.push(Quirk {
            path,
            kind: QuirkKind::ExtraTlv(RawTlv {
                param_type: c.ptype,
                value: tlv[4..].to_vec(),
            }),
        });
        Ok(())
    }
}
