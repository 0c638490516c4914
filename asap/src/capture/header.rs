//! The 4-byte common header shared by every ASAP and ENRP message (RFC 5352 §2.1,
//! RFC 5353 §2.1). Only what framing needs: the codec in `crate::wire` owns the rest.

/// Size of the common header: Type (1), Flags (1), Length (2).
pub(crate) const HEADER_LEN: usize = 4;

/// The common header of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommonHeader {
    /// Message type.
    #[allow(dead_code)]
    pub msg_type: u8,
    /// Length in bytes, including this header, excluding the padding to 4.
    pub length: u16,
}

impl CommonHeader {
    /// Read the header at the start of `bytes`, if there are 4 bytes.
    pub(crate) fn peek(bytes: &[u8]) -> Option<CommonHeader> {
        match bytes {
            [msg_type, _flags, hi, lo, ..] => Some(CommonHeader {
                msg_type: *msg_type,
                length: u16::from_be_bytes([*hi, *lo]),
            }),
            _ => None,
        }
    }

    /// Bytes the message occupies on a byte stream: `length` rounded up to 4.
    pub(crate) fn padded_len(&self) -> usize {
        pad4(usize::from(self.length))
    }
}

/// `n` rounded up to a multiple of 4.
pub(crate) fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_reads_type_and_length() {
        let h = CommonHeader::peek(&[0x0b, 0x00, 0x00, 0x66, 0xff]).unwrap();
        assert_eq!(h.msg_type, 0x0b);
        assert_eq!(h.length, 0x66);
        assert_eq!(h.padded_len(), 0x68);
        assert_eq!(CommonHeader::peek(&[1, 0, 0]), None);
        assert_eq!(pad4(0), 0);
        assert_eq!(pad4(5), 8);
        assert_eq!(pad4(8), 8);
    }
}
