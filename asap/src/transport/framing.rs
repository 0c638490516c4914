//! The RSerPool common header as far as TCP framing needs it (private).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Message Type |  Msg Flags    |        Message Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! RFC 5352 §2.1 / RFC 5353 §2.1: Message Length counts the header, not the final padding;
//! every message is padded with zeros to a multiple of 4 bytes. The full message codec lives in
//! [`crate::wire`]; this module only finds message boundaries.

use super::error::FrameError;

/// Size of the RSerPool common header.
pub(crate) const HEADER_LEN: usize = 4;

/// `len` rounded up to a multiple of 4.
pub(crate) fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// Reads the Message Length of a header and returns the number of bytes the message occupies
/// on the stream (with padding).
pub(crate) fn frame_len(header: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let length = u16::from_be_bytes([header[2], header[3]]);
    if usize::from(length) < HEADER_LEN {
        return Err(FrameError::LengthTooShort { length });
    }
    if usize::from(length) > max {
        return Err(FrameError::LengthTooLarge {
            length: usize::from(length),
            max,
        });
    }
    Ok(padded(usize::from(length)))
}

/// Checks a message handed to `send` and returns how many zero bytes of padding must follow it.
///
/// The message must start with a header whose Message Length is at least 4 and lies between
/// `bytes.len() - 3` and `bytes.len()` (i.e. the caller may or may not have added the padding).
pub(crate) fn outgoing_padding(bytes: &[u8]) -> Result<usize, FrameError> {
    let Some(h) = bytes.get(..HEADER_LEN) else {
        return Err(FrameError::BadOutgoingHeader {
            len: bytes.len(),
            length: 0,
        });
    };
    let length = u16::from_be_bytes([h[2], h[3]]);
    let l = usize::from(length);
    if l < HEADER_LEN || l > bytes.len() || bytes.len() > padded(l) {
        return Err(FrameError::BadOutgoingHeader {
            len: bytes.len(),
            length,
        });
    }
    Ok(padded(l) - bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(frame_len([1, 0, 0, 4], 100), Ok(4));
        assert_eq!(frame_len([1, 0, 0, 5], 100), Ok(8));
        assert_eq!(
            frame_len([1, 0, 0, 3], 100),
            Err(FrameError::LengthTooShort { length: 3 })
        );
        assert_eq!(
            frame_len([1, 0, 0, 101], 100),
            Err(FrameError::LengthTooLarge {
                length: 101,
                max: 100
            })
        );
        assert_eq!(outgoing_padding(&[1, 0, 0, 5, 9]), Ok(3));
        assert_eq!(outgoing_padding(&[1, 0, 0, 5, 9, 0, 0, 0]), Ok(0));
        assert!(outgoing_padding(&[1, 0, 0, 5, 9, 0, 0, 0, 0]).is_err());
        assert!(outgoing_padding(&[1, 0, 0]).is_err());
        assert!(outgoing_padding(&[1, 0, 0, 2]).is_err());
    }
}
