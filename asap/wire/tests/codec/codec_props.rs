//! Property tests: `decode(encode(m)) == m` for arbitrary messages, and fuzz-like runs on
//! random and mutated bytes (no panic; every `Ok` re-encodes to exactly the consumed
//! bytes unless a tolerated irregularity is reported in `warnings`).

use ::rserpool_wire::arbitrary;
use ::rserpool_wire::asap_msg;
use ::rserpool_wire::*;
use proptest::prelude::*;

/// The fuzz property: never panics; an accepted message re-encodes byte-exactly.
fn check_bytes(protocol: Protocol, input: &[u8]) -> Result<(), TestCaseError> {
    match Message::decode(protocol, input) {
        Ok(d) => {
            prop_assert!(d.consumed <= input.len());
            prop_assert!(d.consumed >= 4);
            let _ = d.message.to_string();
            let _ = serde_json::to_string(&d).expect("json");
            if d.warnings.is_empty() {
                let re = d.reencode().expect("re-encode of a decoded message");
                prop_assert_eq!(&re[..], &input[..d.consumed], "{}", d.message);
            }
            // The canonical encoding decodes to the same message.
            let canon = d.message.to_bytes().expect("encode");
            let again = Message::decode(protocol, &canon).expect("canonical decodes");
            prop_assert_eq!(again.message, d.message);
        }
        Err(e) => {
            let _ = e.to_string();
            let _ = e.report();
        }
    }
    Ok(())
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![Just(Protocol::Asap), Just(Protocol::Enrp)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decode_encode_round_trip(m in arbitrary::message()) {
        let b = m.to_bytes().expect("encode");
        prop_assert_eq!(b.len() % 4, 0);
        let d = Message::decode(m.protocol(), &b).expect("decode");
        prop_assert_eq!(&d.message, &m);
        prop_assert_eq!(d.consumed, b.len());
        prop_assert!(d.layout.is_canonical(), "{:?}", d.layout);
        prop_assert!(d.warnings.is_empty());
        prop_assert!(d.reports.is_empty());
        prop_assert_eq!(usize::from(u16::from_be_bytes([b[2], b[3]])), b.len());
        prop_assert_eq!(b[0], m.type_code());
        let _ = m.to_string();
        let _ = serde_json::to_value(&m).expect("json");
    }

    #[test]
    fn parameters_round_trip(
        pe in arbitrary::pool_element(),
        si in arbitrary::server_information(),
        oe in arbitrary::operation_error(),
        ph in arbitrary::pool_handle(),
    ) {
        for p in [
            Parameter::PoolElement(pe),
            Parameter::ServerInformation(si),
            Parameter::OperationError(oe),
            Parameter::PoolHandle(ph),
        ] {
            let b = p.to_vec().expect("encode");
            prop_assert_eq!(b.len() % 4, 0);
            let (q, used) = Parameter::decode(&b).expect("decode");
            prop_assert_eq!(used, b.len());
            prop_assert_eq!(q, p);
        }
    }

    #[test]
    fn random_parameter_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..120)) {
        if let Ok((p, used)) = Parameter::decode(&b) {
            prop_assert!(used <= b.len());
            let _ = p.to_vec().expect("encode");
        }
    }

    #[test]
    fn arbitrary_layouts_never_panic(m in arbitrary::message(), l in arbitrary::layout()) {
        let mut buf = bytes::BytesMut::new();
        if m.encode_with_layout(&l, &mut buf).is_ok() {
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            prop_assert!(len <= buf.len());
            prop_assert_eq!(buf.len() % 4, 0);
            // Whatever it decodes to, decoding must not panic.
            let _ = Message::decode(m.protocol(), &buf);
        } else {
            prop_assert!(buf.is_empty());
        }
    }

    #[test]
    fn random_bytes_never_panic(p in protocol(), b in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_bytes(p, &b)?;
    }

    #[test]
    fn random_bytes_with_valid_header(p in protocol(), t in 1u8..15, f in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut b = vec![t, f, 0, 0];
        b.extend_from_slice(&body);
        let l = b.len() as u16;
        b[2..4].copy_from_slice(&l.to_be_bytes());
        check_bytes(p, &b)?;
    }

    #[test]
    fn mutated_messages(
        m in arbitrary::message(),
        muts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
    ) {
        let mut b = m.to_bytes().expect("encode").to_vec();
        for (i, v, kind) in muts {
            if b.is_empty() { break; }
            let at = i.index(b.len());
            match kind {
                0 => b[at] = v,
                1 => b[at] ^= 1 << (v % 8),
                2 => b.truncate(at),
                _ => b.insert(at, v),
            }
        }
        check_bytes(m.protocol(), &b)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// `HandleResolutionResponse::encode_answer` (borrowed PEs, ASAP transports left out)
    /// gives the bytes of the codec's encoding of the equivalent message, for arbitrary PEs.
    #[test]
    fn resolution_answer_encoder_is_the_message_encoding(
        handle in arbitrary::pool_handle(),
        pes in proptest::collection::vec(arbitrary::pool_element(), 0..6),
        policy in proptest::option::of(arbitrary::policy()),
        accept_updates in any::<bool>(),
    ) {
        let mut fast = bytes::BytesMut::new();
        let fast_r = asap_msg::HandleResolutionResponse::encode_answer(
            &mut fast, accept_updates, &handle, policy.as_ref(), &pes);
        let m: Message = asap_msg::HandleResolutionResponse {
            accept_updates,
            pool_handle: handle,
            policy,
            pool_elements: pes
                .iter()
                .map(|pe| PoolElementInfo { asap_transport: None, ..pe.clone() })
                .collect(),
            error: None,
        }
        .into();
        match m.to_bytes() {
            Ok(b) => {
                prop_assert_eq!(fast_r, Ok(pes.len()));
                prop_assert_eq!(&fast[..], &b[..]);
                let mut tlvs = Vec::new();
                for pe in &pes {
                    let mut t = bytes::BytesMut::new();
                    asap_msg::HandleResolutionResponse::encode_answer_element(pe, &mut t)
                        .expect("a PE of an encodable answer encodes");
                    tlvs.push(t.to_vec());
                }
                let mut cached = bytes::BytesMut::new();
                let n = asap_msg::HandleResolutionResponse::encode_answer(
                    &mut cached, accept_updates, m_handle(&m), m_policy(&m),
                    tlvs.iter().map(Vec::as_slice));
                prop_assert_eq!(n, Ok(pes.len()));
                prop_assert_eq!(&cached[..], &b[..]);
            }
            Err(e) => {
                prop_assert_eq!(fast_r, Err(e));
                prop_assert!(fast.is_empty());
            }
        }
    }
}

fn m_handle(m: &Message) -> &PoolHandle {
    match m {
        Message::Asap(AsapMessage::HandleResolutionResponse(r)) => &r.pool_handle,
        _ => unreachable!("built as a HANDLE_RESOLUTION_RESPONSE"),
    }
}

fn m_policy(m: &Message) -> Option<&Policy> {
    match m {
        Message::Asap(AsapMessage::HandleResolutionResponse(r)) => r.policy.as_ref(),
        _ => None,
    }
}
