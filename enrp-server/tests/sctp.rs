//! The real driver over kernel SCTP: PPIDs 11/12 on the wire, registration, resolution,
//! handle table dump, error reply, association loss.
//!
//! Needs a kernel with SCTP: on a host without it each test prints `SKIPPED` and passes.
//! The VM rig runs this binary with kernel SCTP (`tests/vm/run.sh cargo-tests`,
//! `CARGO_TESTS` in `tests/vm/run.sh`).
//!
//! A test binary of its own (not grouped with the other registrar tests): the VM rig
//! (`tests/vm/run.sh`, `CARGO_TESTS`) copies whole test executables into the guest and runs
//! them under TCG, so this one carries only the tests that need kernel SCTP.

use std::net::SocketAddr;
use std::time::Duration;

use rserpool_tests::registrar::{connect_over, recv_by_ppid, send, spawn, tcp_driver};

use asap::transport::{sctp_probe, Association, Msg, TransportKind};
use asap::wire::asap_msg::{HandleResolution, Registration};
use asap::wire::enrp_msg::HandleTableRequest;
use asap::wire::{
    AsapMessage, CauseCode, EnrpMessage, HandleResolutionOption, Message, Policy, PoolElementInfo,
    Protocol, TransportParameter, TransportUse,
};
use enrp_server::core::CoreConfig;

const ID: u32 = 0x5C79_0001;

fn available() -> bool {
    let probe = sctp_probe();
    if !probe.is_available() {
        eprintln!("SKIPPED: kernel SCTP {probe}");
    }
    probe.is_available()
}

async fn connect(to: SocketAddr) -> Association {
    connect_over(TransportKind::Sctp, to, Protocol::Asap).await
}

/// Next message with its PPID.
async fn recv(a: &mut Association) -> (u32, Message) {
    recv_by_ppid(a, Duration::from_secs(20)).await
}

fn pe(id: u32) -> PoolElementInfo {
    PoolElementInfo {
        id,
        home_server_id: 0,
        registration_life: 60_000,
        user_transport: TransportParameter::Sctp {
            port: 7000,
            transport_use: TransportUse::DataPlusControl,
            addresses: vec!["127.0.0.1".parse().expect("lit")],
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

#[tokio::test]
async fn registrar_over_kernel_sctp() {
    if !available() {
        return;
    }
    let mut core = CoreConfig::new(ID);
    core.asap_announce_targets = Vec::new();
    let lo = "127.0.0.1:0".parse().expect("lit");
    let mut driver = tcp_driver(lo, lo, 100);
    driver.transport = TransportKind::Sctp;
    let server = spawn(core, driver).await.expect("bind");
    let (asap, enrp) = (server.asap, server.enrp);

    let mut pes = Vec::new();
    for id in 1..=2 {
        let mut a = connect(asap).await;
        send(
            &mut a,
            Registration {
                pool_handle: "EchoPool".into(),
                pool_element: pe(id),
            },
        )
        .await;
        match recv(&mut a).await {
            (11, Message::Asap(AsapMessage::RegistrationResponse(r))) => {
                assert!(!r.reject, "{r:?}");
                assert_eq!(r.pe_identifier, id);
            }
            other => panic!("{other:?}"),
        }
        pes.push(a);
    }

    let mut pu = connect(asap).await;
    let mut hr = HandleResolution::new("EchoPool");
    hr.option = Some(HandleResolutionOption {
        items: HandleResolutionOption::ALL,
    });
    send(&mut pu, hr.clone()).await;
    match recv(&mut pu).await {
        (11, Message::Asap(AsapMessage::HandleResolutionResponse(r))) => {
            let mut ids: Vec<u32> = r.pool_elements.iter().map(|p| p.id).collect();
            ids.sort_unstable();
            assert_eq!(ids, vec![1, 2]);
        }
        other => panic!("{other:?}"),
    }

    // Unrecognised message with the report bit: ERROR back, association kept.
    pu.send(&Msg::new(11, 0, vec![0x7F, 0, 0, 4]))
        .await
        .expect("send");
    match recv(&mut pu).await {
        (11, Message::Asap(AsapMessage::Error(e))) => {
            assert_eq!(e.error.first_code(), Some(CauseCode::UnrecognizedMessage))
        }
        other => panic!("{other:?}"),
    }

    // Bad input over SCTP (message boundaries kept): a Length larger than the message and
    // garbage are answered with ERROR (Invalid Values); the association and the
    // registrations survive.
    for bad in [
        vec![0x01, 0, 0, 0x40, 0, 9, 0, 5],
        vec![0x03, 0, 0, 0x0D, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4, 5],
    ] {
        pu.send(&Msg::new(11, 0, bad.clone())).await.expect("send");
        match recv(&mut pu).await {
            (11, Message::Asap(AsapMessage::Error(e))) => {
                assert_eq!(
                    e.error.first_code(),
                    Some(CauseCode::InvalidValues),
                    "{bad:02x?}"
                )
            }
            other => panic!("{bad:02x?}: {other:?}"),
        }
    }
    send(&mut pu, hr.clone()).await;
    match recv(&mut pu).await {
        (11, Message::Asap(AsapMessage::HandleResolutionResponse(r))) => {
            assert_eq!(r.pool_elements.len(), 2, "registrations survive bad input")
        }
        other => panic!("{other:?}"),
    }

    // PE 1's association goes away: it is removed.
    drop(pes.remove(0));
    let mut left = Vec::new();
    for _ in 0..100 {
        send(&mut pu, hr.clone()).await;
        if let (_, Message::Asap(AsapMessage::HandleResolutionResponse(r))) = recv(&mut pu).await {
            left = r.pool_elements.iter().map(|p| p.id).collect();
        }
        if left == vec![2] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, vec![2]);

    // Handle table over the ENRP endpoint with PPID 12.
    let mut tool = connect_over(TransportKind::Sctp, enrp, Protocol::Enrp).await;
    send(
        &mut tool,
        HandleTableRequest {
            own_children_only: true,
            sender: 0x99,
            receiver: 0,
        },
    )
    .await;
    match recv(&mut tool).await {
        (12, Message::Enrp(EnrpMessage::HandleTableResponse(r))) => {
            assert_eq!(r.sender, ID);
            assert_eq!(r.receiver, 0x99);
            let e = &r.pools[0].pool_elements[0];
            assert_eq!(e.id, 2);
            assert_eq!(e.home_server_id, ID);
            assert!(matches!(
                e.asap_transport,
                Some(TransportParameter::Sctp { .. })
            ));
        }
        other => panic!("{other:?}"),
    }

    server.stop().await;
}
