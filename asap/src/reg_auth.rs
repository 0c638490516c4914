//! Per-pool pre-shared keys for registrations (issue 13 item 3; `SECURITY.md` "Per-pool
//! pre-shared keys"; wire format in `asap/wire/INTEROP.md` §10).
//!
//! A plaintext PE proves that it knows its pool's key by appending a **Registration
//! Authenticator** parameter to every ASAP_REGISTRATION:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-------------------------------+-------------------------------+
//! |     Type = 0x8A01             |       Length = 60             |
//! +-------------------------------+-------------------------------+
//! |          Timestamp: milliseconds since 1970-01-01 UTC          |
//! |                          (64 bits)                            |
//! +---------------------------------------------------------------+
//! |                     Nonce (16 random bytes)                   |
//! +---------------------------------------------------------------+
//! |                 HMAC-SHA256 tag (32 bytes)                    |
//! +---------------------------------------------------------------+
//! ```
//!
//! The type's two high bits are `10` (RFC 5354 §3: skip an unrecognised parameter and
//! continue), so a registrar that does not know it (rsplib) ignores it. The tag is
//! HMAC-SHA256 with the pool's key over the label `rserpool-rs registration v1` followed by
//! the **whole message as sent, with the 32 tag bytes set to zero** (header with the final
//! Message Length, the pool handle, the pool element, the authenticator). So the key binds
//! the pool handle, the PE (identifier, transports, policy, life) and the timestamp and
//! nonce; a registrar verifies it in constant time, takes the message only if the timestamp
//! is within its window of its own clock and the nonce was not seen within that window
//! (replays refused), and refuses with cause 0xA otherwise.
//!
//! Why not TLS with a pre-shared key: rustls implements no external PSK (only resumption
//! tickets), and this keeps the PE's transport plaintext (rsplib-compatible framing, any
//! transport).

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Parameter type of the Registration Authenticator (high bits `10`: skip if unknown).
pub const PARAM_TYPE: u16 = 0x8A01;
/// Length of the parameter (type, length, timestamp, nonce, tag).
pub const PARAM_LEN: usize = 4 + 8 + 16 + 32;
/// Smallest key accepted (bytes): 128 bits.
pub const MIN_KEY_LEN: usize = 16;
/// The label the MAC starts with (domain separation from other uses of the key).
const LABEL: &[u8] = b"rserpool-rs registration v1";
/// Offset of the tag in the parameter.
const TAG_AT: usize = 4 + 8 + 16;

/// A pool's pre-shared key. Its `Debug` output never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistrationKey {
    key: Arc<[u8]>,
}

impl fmt::Debug for RegistrationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegistrationKey({} bytes)", self.key.len())
    }
}

/// Why a key, a message or its authenticator was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegAuthError {
    /// The key is shorter than [`MIN_KEY_LEN`] or not hexadecimal.
    #[error("registration key: {0}")]
    BadKey(String),
    /// The message is not an RSerPool message whose parameters can be walked.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// The message carries no Registration Authenticator.
    #[error("no registration authenticator")]
    Missing,
    /// The tag matches none of the keys.
    #[error("registration authenticator does not verify with the pool's key")]
    BadTag,
}

impl RegistrationKey {
    /// A key from its bytes (at least [`MIN_KEY_LEN`]).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, RegAuthError> {
        let v = bytes.into();
        if v.len() < MIN_KEY_LEN {
            return Err(RegAuthError::BadKey(format!(
                "{} bytes, at least {MIN_KEY_LEN} needed",
                v.len()
            )));
        }
        Ok(RegistrationKey { key: v.into() })
    }

    /// A key from hexadecimal (e.g. `openssl rand -hex 32`).
    pub fn from_hex(s: &str) -> Result<Self, RegAuthError> {
        let s = s.trim();
        if !s.len().is_multiple_of(2) {
            return Err(RegAuthError::BadKey("odd number of hex digits".into()));
        }
        let v = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or("x"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| RegAuthError::BadKey("not hexadecimal".into()))?;
        Self::new(v)
    }

    fn mac(&self, message_with_zero_tag: &[u8]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(LABEL);
        m.update(message_with_zero_tag);
        m
    }
}

/// Appends a Registration Authenticator to an encoded ASAP_REGISTRATION (`message`, padded
/// to 4 as every encoded message is), fixes the header's Message Length and fills in the
/// tag. `unix_ms`: the sender's clock; `nonce`: 16 fresh random bytes.
pub fn sign(
    message: &[u8],
    key: &RegistrationKey,
    unix_ms: u64,
    nonce: [u8; 16],
) -> Result<Vec<u8>, RegAuthError> {
    if message.len() < 4 || !message.len().is_multiple_of(4) {
        return Err(RegAuthError::Malformed("not a padded RSerPool message"));
    }
    let mut v = Vec::with_capacity(message.len() + PARAM_LEN);
    v.extend_from_slice(message);
    let at = v.len();
    let total = u16::try_from(at + PARAM_LEN)
        .map_err(|_| RegAuthError::Malformed("message too long for an authenticator"))?;
    v.extend_from_slice(&PARAM_TYPE.to_be_bytes());
    v.extend_from_slice(&(PARAM_LEN as u16).to_be_bytes());
    v.extend_from_slice(&unix_ms.to_be_bytes());
    v.extend_from_slice(&nonce);
    v.extend_from_slice(&[0; 32]);
    v[2..4].copy_from_slice(&total.to_be_bytes());
    let tag = key.mac(&v).finalize().into_bytes();
    v[at + TAG_AT..at + PARAM_LEN].copy_from_slice(&tag);
    Ok(v)
}

/// A verified authenticator: what the registrar checks against its clock and replay cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The sender's timestamp (ms since the Unix epoch).
    pub unix_ms: u64,
    /// The nonce.
    pub nonce: [u8; 16],
    /// Index of the key (of those given to [`verify`]) that verified it.
    pub key_index: usize,
}

/// Finds the Registration Authenticator among the top-level parameters of `message` and
/// verifies its tag with each of `keys` (constant-time comparison).
pub fn verify(message: &[u8], keys: &[RegistrationKey]) -> Result<Verified, RegAuthError> {
    let at = find(message)?;
    let p = &message[at..at + PARAM_LEN];
    let unix_ms = u64::from_be_bytes(p[4..12].try_into().unwrap_or([0; 8]));
    let nonce: [u8; 16] = p[12..28].try_into().unwrap_or([0; 16]);
    let tag = &p[TAG_AT..PARAM_LEN];
    let mut zeroed = message.to_vec();
    zeroed[at + TAG_AT..at + PARAM_LEN].fill(0);
    for (key_index, k) in keys.iter().enumerate() {
        if k.mac(&zeroed).verify_slice(tag).is_ok() {
            return Ok(Verified {
                unix_ms,
                nonce,
                key_index,
            });
        }
    }
    Err(RegAuthError::BadTag)
}

/// Offset of the authenticator parameter in `message` (top level, after the 4-byte header).
fn find(message: &[u8]) -> Result<usize, RegAuthError> {
    let end = match message.get(2..4) {
        Some(l) => usize::from(u16::from_be_bytes([l[0], l[1]])).min(message.len()),
        None => return Err(RegAuthError::Malformed("shorter than the header")),
    };
    let mut at = 4;
    while at + 4 <= end {
        let t = u16::from_be_bytes([message[at], message[at + 1]]);
        let len = usize::from(u16::from_be_bytes([message[at + 2], message[at + 3]]));
        if len < 4 || at + len > end {
            return Err(RegAuthError::Malformed("parameter length"));
        }
        if t == PARAM_TYPE {
            return if len == PARAM_LEN {
                Ok(at)
            } else {
                Err(RegAuthError::Malformed("authenticator length"))
            };
        }
        at += len.div_ceil(4) * 4;
    }
    Err(RegAuthError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> RegistrationKey {
        RegistrationKey::new(vec![b; 32]).expect("key")
    }

    /// A REGISTRATION-shaped message: header + one 8-byte Pool Handle TLV.
    fn msg() -> Vec<u8> {
        vec![1, 0, 0, 12, 0, 9, 0, 8, b'P', b'o', b'o', b'l']
    }

    #[test]
    fn sign_and_verify_round_trip_and_bind_the_message() {
        let signed = sign(&msg(), &key(1), 1_700_000_000_000, [7; 16]).expect("sign");
        assert_eq!(signed.len(), 12 + PARAM_LEN);
        assert_eq!(&signed[2..4], &((12 + PARAM_LEN) as u16).to_be_bytes());
        assert_eq!(&signed[12..14], &[0x8A, 0x01]);
        let v = verify(&signed, &[key(2), key(1)]).expect("verifies with the second key");
        assert_eq!(
            v,
            Verified {
                unix_ms: 1_700_000_000_000,
                nonce: [7; 16],
                key_index: 1
            }
        );
        assert_eq!(verify(&signed, &[key(2)]), Err(RegAuthError::BadTag));
        // Any changed byte (pool handle, timestamp, nonce, tag) breaks it.
        for i in [8, 20, 30, 50] {
            let mut t = signed.clone();
            t[i] ^= 1;
            assert_eq!(verify(&t, &[key(1)]), Err(RegAuthError::BadTag), "byte {i}");
        }
        assert_eq!(verify(&msg(), &[key(1)]), Err(RegAuthError::Missing));
        assert!(matches!(
            verify(&[1, 0], &[key(1)]),
            Err(RegAuthError::Malformed(_))
        ));
    }

    #[test]
    fn keys_from_hex() {
        let k = RegistrationKey::from_hex(&"ab".repeat(16)).expect("16 bytes");
        assert_eq!(k, RegistrationKey::new(vec![0xab; 16]).expect("key"));
        assert!(RegistrationKey::from_hex("abcd").is_err(), "too short");
        assert!(RegistrationKey::from_hex(&"zz".repeat(16)).is_err());
        assert!(RegistrationKey::from_hex(&"a".repeat(33)).is_err());
        assert_eq!(format!("{k:?}"), "RegistrationKey(16 bytes)");
    }
}
