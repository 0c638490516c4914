//! Authentication of the daemon ↔ proxy link (`PROTOCOL.md` §1.1, issue 13 item 5): a
//! per-daemon pre-shared key, a handshake with a fresh nonce from each side, and an
//! HMAC-SHA256 tag on every frame after it.
//!
//! - **Session key.** `K = HMAC-SHA256(psk, "legacy-protocol/2 session" ‖ len(id) ‖ id ‖
//!   nonce_daemon ‖ nonce_proxy)`. Both nonces are 32 random bytes, so a recorded session
//!   cannot be replayed into a new one, and the daemon identity is bound into the key: a
//!   daemon that claims another's identity without its key cannot produce one valid tag.
//! - **Frame tags.** `tag = HMAC-SHA256(K, direction ‖ seq ‖ body)`, where `direction` is
//!   one byte (1 daemon → proxy, 2 proxy → daemon) and `seq` the frame's implicit 64-bit
//!   counter in that direction (0, 1, 2, … never sent). A replayed, reordered, dropped,
//!   reflected or altered frame fails its tag, and the receiver closes the connection.
//! - **Proxy proof.** The proxy's `auth_accept` carries `HMAC-SHA256(K, "proxy")`, so the
//!   daemon knows before sending anything that the proxy holds its key too.
//!
//! Why HMAC and not TLS: legacy hosts run a static daemon built for a small footprint; a
//! pre-shared key per daemon needs no certificate authority, no clock for certificate
//! validity and no TLS library, and confidentiality is not needed for process status. The
//! cost is that pushed configurations travel in clear (keep keys in `key_file`s, not in a
//! pushed text).
//!
//! This module is pure (no I/O): [`SessionKey`], [`Sealer`] and [`Opener`] work on bytes.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{ProtocolError, FRAME_HEADER_LEN, MAX_FRAME_LEN};

type HmacSha256 = Hmac<Sha256>;

/// Length of a frame tag (HMAC-SHA256).
pub const TAG_LEN: usize = 32;
/// Length of each side's handshake nonce.
pub const NONCE_LEN: usize = 32;
/// Shortest pre-shared key accepted (128 bits).
pub const KEY_MIN_LEN: usize = 16;
/// Label of the session key derivation.
const SESSION_LABEL: &[u8] = b"legacy-protocol/2 session";
/// Label of the proxy's proof of key possession.
const PROXY_PROOF_LABEL: &[u8] = b"proxy";

/// Whether the link is authenticated. `none` only by explicit operator choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthMode {
    /// Pre-shared key per daemon, HMAC-SHA256 on every frame (the default).
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// Plaintext: anyone who reaches the port may speak for any daemon.
    #[serde(rename = "none")]
    None,
}

impl std::fmt::Display for AuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthMode::HmacSha256 => "hmac-sha256",
            AuthMode::None => "none",
        })
    }
}

/// Errors reading a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not an even number of hex digits.
    #[error("key is not hexadecimal (expected {} or more hex digits)", 2 * KEY_MIN_LEN)]
    NotHex,
    /// Fewer than [`KEY_MIN_LEN`] bytes.
    #[error("key has {0} bytes; at least {KEY_MIN_LEN} (32 hex digits) are required")]
    TooShort(usize),
    /// The key file could not be read.
    #[error("cannot read key file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// A pre-shared key. Its `Debug` form does not show the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key(<{} bytes>)", self.0.len())
    }
}

impl Key {
    /// Parses hex text (surrounding whitespace ignored), at least [`KEY_MIN_LEN`] bytes.
    pub fn from_hex(text: &str) -> Result<Key, KeyError> {
        let t = text.trim();
        if t.len() % 2 == 1 {
            return Err(KeyError::NotHex);
        }
        let bytes = (0..t.len())
            .step_by(2)
            .map(|i| {
                t.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(KeyError::NotHex)
            })
            .collect::<Result<Vec<u8>, KeyError>>()?;
        if bytes.len() < KEY_MIN_LEN {
            return Err(KeyError::TooShort(bytes.len()));
        }
        Ok(Key(bytes))
    }

    /// Reads a key file (hex text, as written by `legacy-daemon --gen-key`).
    pub fn load(path: &std::path::Path) -> Result<Key, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeyError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Key::from_hex(&text).map_err(|e| KeyError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// A new random 32-byte key from the operating system's generator.
    pub fn generate() -> Key {
        let mut k = vec![0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k);
        Key(k)
    }

    /// The key as lower-case hex.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }
}

/// A handshake nonce.
pub type Nonce = [u8; NONCE_LEN];

/// A fresh random nonce from the operating system's generator.
pub fn new_nonce() -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut n);
    n
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a hex nonce or tag of exactly `N` bytes.
pub fn from_hex_exact<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Direction of a frame, bound into its tag so a frame cannot be reflected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Daemon → proxy.
    DaemonToProxy = 1,
    /// Proxy → daemon.
    ProxyToDaemon = 2,
}

/// The key of one connection, derived from the pre-shared key, the daemon identity and both
/// nonces.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

impl SessionKey {
    /// Derives the session key (module documentation).
    pub fn derive(psk: &Key, daemon_id: &str, daemon: &Nonce, proxy: &Nonce) -> SessionKey {
        let mut m = mac(&psk.0);
        m.update(SESSION_LABEL);
        m.update(&(daemon_id.len() as u64).to_be_bytes());
        m.update(daemon_id.as_bytes());
        m.update(daemon);
        m.update(proxy);
        SessionKey(m.finalize().into_bytes().into())
    }

    /// The proxy's proof of key possession sent in `auth_accept`.
    pub fn proxy_proof(&self) -> [u8; TAG_LEN] {
        let mut m = mac(&self.0);
        m.update(PROXY_PROOF_LABEL);
        m.finalize().into_bytes().into()
    }

    /// Checks a proxy proof in constant time.
    pub fn verify_proxy_proof(&self, proof: &[u8]) -> bool {
        let mut m = mac(&self.0);
        m.update(PROXY_PROOF_LABEL);
        m.verify_slice(proof).is_ok()
    }

    fn frame_mac(&self, dir: Direction, seq: u64, body: &[u8]) -> HmacSha256 {
        let mut m = mac(&self.0);
        m.update(&[dir as u8]);
        m.update(&seq.to_be_bytes());
        m.update(body);
        m
    }
}

/// Seals outgoing frames of one direction: `length ‖ body ‖ tag` (no tag without a key).
#[derive(Debug, Clone)]
pub struct Sealer {
    key: Option<SessionKey>,
    dir: Direction,
    seq: u64,
}

impl Sealer {
    /// A sealer for `dir`; `key: None` is the plaintext mode.
    pub fn new(key: Option<SessionKey>, dir: Direction) -> Sealer {
        Sealer { key, dir, seq: 0 }
    }

    /// The complete frame for `body`; advances the sequence counter.
    pub fn seal(&mut self, body: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        if body.len() > MAX_FRAME_LEN {
            return Err(ProtocolError::FrameTooLarge(body.len()));
        }
        let tag_len = if self.key.is_some() { TAG_LEN } else { 0 };
        let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len() + tag_len);
        // Cannot truncate: body.len() + TAG_LEN <= MAX_FRAME_LEN + 32 < u32::MAX.
        out.extend_from_slice(&((body.len() + tag_len) as u32).to_be_bytes());
        out.extend_from_slice(body);
        if let Some(k) = &self.key {
            let tag = k
                .frame_mac(self.dir, self.seq, body)
                .finalize()
                .into_bytes();
            out.extend_from_slice(&tag);
        }
        self.seq += 1;
        Ok(out)
    }
}

/// Checks incoming frames of one direction.
#[derive(Debug, Clone)]
pub struct Opener {
    key: Option<SessionKey>,
    dir: Direction,
    seq: u64,
}

impl Opener {
    /// An opener for frames travelling in `dir`; `key: None` is the plaintext mode.
    pub fn new(key: Option<SessionKey>, dir: Direction) -> Opener {
        Opener { key, dir, seq: 0 }
    }

    /// Verifies the tag of a frame payload (`body ‖ tag`) in constant time and returns the
    /// body. Any failure is final: the stream is no longer trustworthy.
    pub fn open<'a>(&mut self, payload: &'a [u8]) -> Result<&'a [u8], ProtocolError> {
        let Some(k) = &self.key else {
            self.seq += 1;
            return Ok(payload);
        };
        let split = payload
            .len()
            .checked_sub(TAG_LEN)
            .ok_or_else(|| ProtocolError::Auth("frame shorter than its tag".into()))?;
        let (body, tag) = payload.split_at(split);
        k.frame_mac(self.dir, self.seq, body)
            .verify_slice(tag)
            .map_err(|_| {
                ProtocolError::Auth(format!(
                    "bad tag on frame {} (wrong key, replayed or altered frame)",
                    self.seq
                ))
            })?;
        self.seq += 1;
        Ok(body)
    }
}

/// First frame of every connection, daemon → proxy, in clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthInit {
    /// [`crate::PROTOCOL_VERSION`] of the daemon.
    pub protocol_version: u16,
    /// The identity the daemon claims (proven by its first tagged frame).
    pub daemon_id: String,
    /// The daemon's authentication mode.
    pub auth: AuthMode,
    /// The daemon's nonce, hex.
    pub nonce: String,
}

/// The proxy's answer to [`AuthInit`], in clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthAnswer {
    /// Go ahead: the proxy's nonce and its proof of key possession (absent in mode none).
    AuthAccept {
        /// The proxy's mode.
        auth: AuthMode,
        /// The proxy's nonce, hex.
        nonce: String,
        /// [`SessionKey::proxy_proof`], hex (mode `hmac-sha256` only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<String>,
    },
    /// Refused, with the reason (also logged by the proxy with the peer address).
    AuthRefused {
        /// Why.
        reason: String,
    },
}

/// Tagged form of [`AuthInit`] on the wire (`"type": "auth_init"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthHello {
    /// The daemon's first frame.
    AuthInit(AuthInit),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (SessionKey, SessionKey) {
        let psk = Key::from_hex(&"ab".repeat(32)).unwrap();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        (
            SessionKey::derive(&psk, "d1", &a, &b),
            SessionKey::derive(&psk, "d1", &a, &b),
        )
    }

    #[test]
    fn sealed_frames_open_in_order_only() {
        let (k1, k2) = keys();
        let mut s = Sealer::new(Some(k1), Direction::DaemonToProxy);
        let f0 = s.seal(b"zero").unwrap();
        let f1 = s.seal(b"one").unwrap();
        let mut o = Opener::new(Some(k2.clone()), Direction::DaemonToProxy);
        assert_eq!(o.open(&f0[4..]).unwrap(), b"zero");
        // Replaying frame 0 in place of frame 1 fails.
        assert!(matches!(o.open(&f0[4..]), Err(ProtocolError::Auth(_))));
        let mut o = Opener::new(Some(k2.clone()), Direction::DaemonToProxy);
        // Skipping frame 0 fails.
        assert!(o.open(&f1[4..]).is_err());
        // Reflection (other direction) fails.
        let mut o = Opener::new(Some(k2), Direction::ProxyToDaemon);
        assert!(o.open(&f0[4..]).is_err());
    }

    #[test]
    fn identity_and_nonces_are_bound_into_the_key() {
        let psk = Key::from_hex(&"ab".repeat(32)).unwrap();
        let base = SessionKey::derive(&psk, "d1", &[1; 32], &[2; 32]);
        let mut s = Sealer::new(Some(base), Direction::DaemonToProxy);
        let f = s.seal(b"x").unwrap();
        for other in [
            SessionKey::derive(&psk, "d2", &[1; 32], &[2; 32]),
            SessionKey::derive(&psk, "d1", &[1; 32], &[3; 32]),
            SessionKey::derive(&Key::generate(), "d1", &[1; 32], &[2; 32]),
        ] {
            let mut o = Opener::new(Some(other), Direction::DaemonToProxy);
            assert!(o.open(&f[4..]).is_err());
        }
        let mut altered = f.clone();
        altered[4] ^= 1;
        let k = SessionKey::derive(&psk, "d1", &[1; 32], &[2; 32]);
        assert!(Opener::new(Some(k.clone()), Direction::DaemonToProxy)
            .open(&altered[4..])
            .is_err());
        assert!(k.verify_proxy_proof(&k.proxy_proof()));
        assert!(!k.verify_proxy_proof(&[0u8; 32]));
    }

    #[test]
    fn keys_parse_from_hex_with_a_minimum_length() {
        assert_eq!(Key::from_hex("zz"), Err(KeyError::NotHex));
        assert_eq!(Key::from_hex("abc"), Err(KeyError::NotHex));
        assert_eq!(Key::from_hex("abcd"), Err(KeyError::TooShort(2)));
        let k = Key::generate();
        assert_eq!(Key::from_hex(&format!(" {}\n", k.to_hex())), Ok(k.clone()));
        assert!(!format!("{k:?}").contains(&k.to_hex()));
        assert_eq!(from_hex_exact::<2>("0aff"), Some([10, 255]));
        assert_eq!(from_hex_exact::<2>("0af"), None);
    }

    #[test]
    fn plaintext_mode_has_no_tag() {
        let mut s = Sealer::new(None, Direction::DaemonToProxy);
        let f = s.seal(b"abc").unwrap();
        assert_eq!(f, b"\0\0\0\x03abc");
        let mut o = Opener::new(None, Direction::DaemonToProxy);
        assert_eq!(o.open(&f[4..]).unwrap(), b"abc");
    }
}
