//! `TransportKind::Auto` and kernel SCTP detection.
//!
//! On the project's build hosts the kernel has no SCTP: `Auto` must fall back to TCP and an
//! explicit `Sctp` must fail with the typed `SctpUnsupported` error (never `EBADF`). On a kernel
//! with SCTP (the qemu VM) the same tests check the other branch.
//!
//! Run: `cargo test -p asap --test transport_kind -- --nocapture`
//!
//! A test binary of its own (not grouped with the other transport tests): the VM rig
//! (`tests/vm/run.sh`, `CARGO_TESTS`) copies whole test executables into the guest and runs
//! them under TCG, so this one carries only the tests that need kernel SCTP.

use asap::transport::{
    sctp_probe, Event, Msg, SctpProbe, Transport, TransportConfig, TransportError, TransportKind,
};

#[tokio::test]
async fn auto_uses_sctp_if_available_else_tcp() {
    let probe = sctp_probe();
    assert_eq!(sctp_probe(), probe, "probe result is cached and stable");
    let t = Transport::new(TransportConfig::asap(TransportKind::Auto));
    match probe {
        SctpProbe::Unavailable { errno } => {
            eprintln!("kernel SCTP unavailable (errno {errno}): expecting TCP fallback");
            assert!(
                [
                    libc::EPROTONOSUPPORT,
                    libc::ESOCKTNOSUPPORT,
                    libc::EAFNOSUPPORT
                ]
                .contains(&errno),
                "unexpected errno {errno}"
            );
            assert_eq!(t.kind(), TransportKind::Tcp);
        }
        SctpProbe::Available => {
            eprintln!("kernel SCTP available: expecting SCTP");
            assert_eq!(t.kind(), TransportKind::Sctp);
        }
        other => panic!("probe result this test does not know: {other:?}"),
    }
    // Whatever was chosen works end to end.
    let l = t
        .listen(&["127.0.0.1:0".parse().expect("literal")])
        .await
        .expect("listen");
    assert_eq!(l.kind(), t.kind());
    let addr = l.local_addrs().expect("addrs")[0];
    let mut c = t.connect(&[addr], &[]).await.expect("connect");
    let mut s = l.accept().await.expect("accept");
    c.send(&Msg::new(11, 0, vec![1, 0, 0, 4]))
        .await
        .expect("send");
    loop {
        match s.recv().await.expect("event") {
            Event::Up { .. } => continue,
            Event::Message(m) => {
                assert_eq!((m.ppid, &m.bytes[..]), (11, &[1u8, 0, 0, 4][..]));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn explicit_sctp_without_kernel_support_is_a_typed_error() {
    if sctp_probe() == SctpProbe::Available {
        eprintln!("SKIPPED: this kernel has SCTP (see transport_sctp for the SCTP tests)");
        return;
    }
    let t = Transport::new(TransportConfig::asap(TransportKind::Sctp));
    let addr = "127.0.0.1:0".parse().expect("literal");
    for res in [
        t.listen(&[addr]).await.map(|_| ()),
        t.connect(&["127.0.0.1:9".parse().expect("literal")], &[])
            .await
            .map(|_| ()),
    ] {
        match res {
            Err(TransportError::SctpUnsupported { source }) => {
                assert_ne!(source.raw_os_error(), Some(libc::EBADF));
                assert!(source.raw_os_error().is_some());
            }
            other => panic!("expected SctpUnsupported, got {other:?}"),
        }
    }
}

#[test]
fn kind_parses_from_config_strings() {
    assert_eq!("auto".parse::<TransportKind>(), Ok(TransportKind::Auto));
    assert_eq!("sctp".parse::<TransportKind>(), Ok(TransportKind::Sctp));
    assert_eq!("tcp".parse::<TransportKind>(), Ok(TransportKind::Tcp));
    assert!("quic".parse::<TransportKind>().is_err());
    assert_eq!(TransportKind::default(), TransportKind::Auto);
}
