//! Fuzz target `daemon_protocol`: both peers' parsers of the legacy-daemon ↔ proxy-pe
//! protocol (`legacy-protocol`, legacy-daemon/PROTOCOL.md; RELIABILITY.md).
//!
//! Byte 0 selects how the rest is cut into reads (so frames split at every boundary); the
//! bytes go through a [`FrameDecoder`] and every complete payload is parsed as what either
//! side may receive: the proxy's view (`auth_init` handshake, tagged payloads checked by an
//! [`Opener`] with a fixed key, [`DaemonFrame`] applied to a [`StatusTable`]) and the
//! daemon's view ([`AuthAnswer`], [`ProxyMessage`]).
//!
//! Checked: no panic anywhere; every accepted message re-encodes with [`encode_frame`] to a
//! frame that decodes to a message with the same encoding (round trip); a payload sealed
//! with the fixed key opens to the same body.
#![no_main]

use legacy_protocol::auth::{AuthAnswer, AuthHello, Direction, Key, Opener, Sealer, SessionKey};
use legacy_protocol::receiver::StatusTable;
use legacy_protocol::{encode_frame, DaemonFrame, DaemonMessage, FrameDecoder, ProxyMessage};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Parses `body` as `T`; if accepted, its frame must decode back to the same encoding.
fn parse_round_trip<T: Serialize + DeserializeOwned>(body: &[u8]) -> Option<T> {
    let msg: T = serde_json::from_slice(body).ok()?;
    let frame = encode_frame(&msg).expect("an accepted message encodes");
    let mut d = FrameDecoder::new();
    d.push(&frame);
    let again: T = d
        .next_frame()
        .expect("own frame decodes")
        .expect("own frame is complete");
    assert_eq!(d.buffered(), 0);
    let frame2 = encode_frame(&again).expect("encodes again");
    assert_eq!(frame, frame2, "encoding not stable over a round trip");
    Some(msg)
}

fn session_key() -> SessionKey {
    let psk = Key::from_hex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
        .expect("fixed key");
    SessionKey::derive(&psk, "fuzz", &[1; 32], &[2; 32])
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(cut % 64) + 1;
    let key = session_key();
    let mut opener = Opener::new(Some(key.clone()), Direction::DaemonToProxy);
    let mut table: Option<StatusTable> = None;
    let mut raw = FrameDecoder::new();
    let mut typed = FrameDecoder::new();
    for piece in input.chunks(chunk) {
        raw.push(piece);
        typed.push(piece);
        // The typed decoder (plaintext peers read whole JSON frames).
        loop {
            match typed.next_frame::<DaemonFrame>() {
                Ok(Some(f)) => {
                    let _ = parse_round_trip::<DaemonFrame>(&serde_json::to_vec(&f).unwrap());
                }
                Ok(None) | Err(_) => break,
            }
        }
        // The raw decoder: every payload parsed as everything either side may receive.
        loop {
            let payload = match raw.next_raw() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(_) => return,
            };
            let _ = parse_round_trip::<AuthHello>(&payload);
            let _ = parse_round_trip::<AuthAnswer>(&payload);
            let _ = parse_round_trip::<ProxyMessage>(&payload);
            if let Ok(body) = opener.open(&payload) {
                // Only a forged tag could get here; parse what it carries anyway.
                let _ = parse_round_trip::<DaemonFrame>(body);
            }
            if let Some(frame) = parse_round_trip::<DaemonFrame>(&payload) {
                match (&mut table, &frame.msg) {
                    (_, DaemonMessage::Hello(h)) => table = Some(StatusTable::new(h.clone())),
                    (Some(t), m) => {
                        let _ = t.apply(m);
                        let _ = t.running();
                    }
                    (None, _) => {}
                }
            }
            // Sealing the same body with the fixed key must open to it again.
            if payload.len() <= 4096 {
                let mut sealer = Sealer::new(Some(key.clone()), Direction::ProxyToDaemon);
                let mut check = Opener::new(Some(key.clone()), Direction::ProxyToDaemon);
                let sealed = sealer.seal(&payload).expect("seal");
                let mut d = FrameDecoder::new();
                d.push(&sealed);
                let p = d.next_raw().expect("sealed frame").expect("complete");
                assert_eq!(check.open(&p).expect("opens"), &payload[..]);
            }
        }
    }
});
