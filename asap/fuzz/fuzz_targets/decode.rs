//! Fuzz target `decode`: the first input byte picks ASAP or ENRP, the rest is decoded.
//!
//! Properties checked on every input:
//! * `Message::decode` never panics;
//! * an accepted message without warnings re-encodes (with its layout) to exactly the
//!   consumed bytes;
//! * its canonical encoding decodes to the same message.
#![no_main]

use asap::wire::{Message, Protocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let protocol = if sel & 1 == 0 { Protocol::Asap } else { Protocol::Enrp };
    if let Ok(d) = Message::decode(protocol, input) {
        if d.warnings.is_empty() {
            let re = d.reencode().expect("re-encode");
            assert_eq!(&re[..], &input[..d.consumed]);
        }
        let canon = d.message.to_bytes().expect("encode");
        let again = Message::decode(protocol, &canon).expect("canonical decodes");
        assert_eq!(again.message, d.message);
    }
});
