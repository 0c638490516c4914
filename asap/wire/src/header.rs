//! The 4-byte common header of every ASAP and ENRP message (RFC 5354 §4; RFC 5352 §2.1,
//! RFC 5353 §2.1) — the one place that reads it for framing (capture reader, TCP
//! transport) and for the codec.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Message Type |  Msg Flags    |        Message Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Message Length counts the header and the value, not the final padding; every message
//! is padded with zeros to a multiple of 4 bytes.

/// Size of the common header: Type (1), Flags (1), Length (2).
pub const HEADER_LEN: usize = 4;

/// `len` rounded up to a multiple of 4 (RFC 5354 §2 padding rule).
pub const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// The common header of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonHeader {
    /// Message Type (its protocol comes from the PPID or port).
    pub msg_type: u8,
    /// Message Flags.
    pub flags: u8,
    /// Message Length: bytes including this header, excluding the padding to 4.
    pub length: u16,
}

impl CommonHeader {
    /// Reads the header at the start of `bytes`; `None` with fewer than 4 bytes.
    pub fn peek(bytes: &[u8]) -> Option<CommonHeader> {
        match bytes {
            [msg_type, flags, hi, lo, ..] => Some(CommonHeader {
                msg_type: *msg_type,
                flags: *flags,
                length: u16::from_be_bytes([*hi, *lo]),
            }),
            _ => None,
        }
    }

    /// Bytes the message occupies on a byte stream: Length rounded up to 4.
    pub fn padded_len(&self) -> usize {
        padded(usize::from(self.length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_reads_type_flags_and_length() {
        let h = CommonHeader::peek(&[0x0b, 0x01, 0x00, 0x66, 0xff]).unwrap();
        assert_eq!((h.msg_type, h.flags, h.length), (0x0b, 0x01, 0x66));
        assert_eq!(h.padded_len(), 0x68);
        assert_eq!(CommonHeader::peek(&[1, 0, 0]), None);
        assert_eq!((padded(0), padded(5), padded(8)), (0, 8, 8));
    }
}
