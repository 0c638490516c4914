//! Host integration tests: the real driver over TCP on 127.0.0.1 ephemeral ports, with PEs
//! and PUs speaking ASAP through `asap::transport`.

use rserpool_tests::enrp_msgs::cut_short;
use rserpool_tests::registrar::{
    connect, local, loopback_tcp, recv_msg as recv, register, send, send_raw, Running,
};

use std::time::Duration;

use asap::transport::{Association, Event, Msg};
use asap::wire::asap_msg::{EndpointKeepAliveAck, HandleResolution, Registration};
use asap::wire::enrp_msg::HandleTableRequest;
use asap::wire::{
    AsapMessage, CauseCode, EnrpMessage, HandleResolutionOption, Message, Policy, PoolElementInfo,
    Protocol, TransportUse,
};
use enrp_server::core::CoreConfig;

const ID: u32 = 0x7E57_0001;

async fn start(tune: impl FnOnce(&mut CoreConfig)) -> Running {
    local(ID, tune).await
}

/// A registrar that sends keep-alives every `interval_ms` and waits `timeout_ms` for the ACK.
async fn with_keep_alive(interval_ms: u64, timeout_ms: u64) -> Running {
    start(|c| {
        c.keep_alive_interval = Duration::from_millis(interval_ms);
        c.keep_alive_timeout = Duration::from_millis(timeout_ms);
    })
    .await
}

fn pe(id: u32, port: u16, policy: Policy) -> PoolElementInfo {
    PoolElementInfo {
        id,
        home_server_id: 0,
        registration_life: 60_000,
        user_transport: loopback_tcp(port, TransportUse::DataOnly),
        policy,
        asap_transport: None,
    }
}

async fn resolve(a: &mut Association, handle: &str, items: Option<u32>) -> Message {
    let mut hr = HandleResolution::new(handle);
    hr.option = items.map(|items| HandleResolutionOption { items });
    send(a, hr).await;
    recv(a, Protocol::Asap).await
}

fn ids(m: &Message) -> Vec<u32> {
    match m {
        Message::Asap(AsapMessage::HandleResolutionResponse(r)) => {
            let mut v: Vec<u32> = r.pool_elements.iter().map(|p| p.id).collect();
            v.sort_unstable();
            v
        }
        other => panic!("expected HANDLE_RESOLUTION_RESPONSE, got {other:?}"),
    }
}

#[tokio::test]
async fn register_resolve_drop_and_errors() {
    let srv = start(|_| {}).await;

    // Three PEs on their own connections.
    let mut pes = Vec::new();
    for id in 1..=3u32 {
        let mut a = connect(srv.asap, Protocol::Asap).await;
        let r = register(
            &mut a,
            "EchoPool",
            pe(id, 7000 + id as u16, Policy::RoundRobin),
        )
        .await;
        assert!(!r.reject, "{r:?}");
        assert_eq!(r.pe_identifier, id);
        pes.push(a);
    }
    // A refused one: different policy.
    let mut bad = connect(srv.asap, Protocol::Asap).await;
    let r = register(&mut bad, "EchoPool", pe(9, 7009, Policy::Random)).await;
    assert!(r.reject);
    assert_eq!(
        r.error.as_ref().and_then(|e| e.first_code()),
        Some(CauseCode::InconsistentPoolingPolicy)
    );

    // A PU resolves all of them.
    let mut pu = connect(srv.asap, Protocol::Asap).await;
    let m = resolve(&mut pu, "EchoPool", Some(HandleResolutionOption::ALL)).await;
    assert_eq!(ids(&m), vec![1, 2, 3]);
    if let Message::Asap(AsapMessage::HandleResolutionResponse(r)) = &m {
        assert!(r.pool_elements.iter().all(|p| p.home_server_id == ID));
    }
    // Unknown pool.
    match resolve(&mut pu, "NoPool", None).await {
        Message::Asap(AsapMessage::HandleResolutionResponse(r)) => {
            assert!(r.pool_elements.is_empty());
            assert_eq!(
                r.error.as_ref().and_then(|e| e.first_code()),
                Some(CauseCode::UnknownPoolHandle)
            );
        }
        other => panic!("{other:?}"),
    }

    // Malformed bytes: a well-framed REGISTRATION whose PE TLV is cut → ERROR, and the
    // connection survives (the next request is answered).
    let cut = cut_short(
        Registration {
            pool_handle: "EchoPool".into(),
            pool_element: pe(7, 7007, Policy::RoundRobin),
        },
        8,
    );
    send_raw(&mut pu, 11, cut).await;
    match recv(&mut pu, Protocol::Asap).await {
        Message::Asap(AsapMessage::Error(e)) => {
            assert_eq!(e.error.first_code(), Some(CauseCode::InvalidValues))
        }
        other => panic!("expected ERROR, got {other:?}"),
    }
    // Unrecognised message type with the report bit.
    send_raw(&mut pu, 11, vec![0x7F, 0, 0, 4]).await;
    match recv(&mut pu, Protocol::Asap).await {
        Message::Asap(AsapMessage::Error(e)) => {
            assert_eq!(e.error.first_code(), Some(CauseCode::UnrecognizedMessage));
            assert_eq!(e.error.causes[0].info, vec![0x7F, 0, 0, 4]);
        }
        other => panic!("expected ERROR, got {other:?}"),
    }
    assert_eq!(
        ids(&resolve(&mut pu, "EchoPool", Some(10)).await),
        vec![1, 2, 3]
    );

    // PE 2's connection drops: it is removed.
    let pe2 = pes.remove(1);
    drop(pe2);
    let mut left = Vec::new();
    for _ in 0..100 {
        left = ids(&resolve(&mut pu, "EchoPool", Some(10)).await);
        if left == vec![1, 3] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left, vec![1, 3]);

    // hsdump-style dump over the ENRP port, with M-bit continuation (chunk 128: one page).
    let mut tool = connect(srv.enrp, Protocol::Enrp).await;
    send(
        &mut tool,
        HandleTableRequest {
            own_children_only: false,
            sender: 0,
            receiver: 0,
        },
    )
    .await;
    match recv(&mut tool, Protocol::Enrp).await {
        Message::Enrp(EnrpMessage::HandleTableResponse(r)) => {
            assert!(!r.more);
            assert_eq!(r.sender, ID);
            let dumped: Vec<u32> = r
                .pools
                .iter()
                .flat_map(|p| p.pool_elements.iter().map(|e| e.id))
                .collect();
            assert_eq!(dumped, vec![1, 3]);
        }
        other => panic!("{other:?}"),
    }
    srv.stop().await;
}

#[tokio::test]
async fn keep_alive_answered_keeps_silent_pe_removed() {
    let srv = with_keep_alive(100, 200).await;
    let mut alive = connect(srv.asap, Protocol::Asap).await;
    assert!(
        !register(&mut alive, "KA", pe(1, 7001, Policy::RoundRobin))
            .await
            .reject
    );
    let mut silent = connect(srv.asap, Protocol::Asap).await;
    assert!(
        !register(&mut silent, "KA", pe(2, 7002, Policy::RoundRobin))
            .await
            .reject
    );

    // The alive PE answers three keep-alives (each carries rsplib's PE ID TLV).
    for _ in 0..3 {
        match recv(&mut alive, Protocol::Asap).await {
            Message::Asap(AsapMessage::EndpointKeepAlive(k)) => {
                assert_eq!(k.server_id, ID);
                assert_eq!(k.pe_identifier, Some(1));
                send(
                    &mut alive,
                    EndpointKeepAliveAck {
                        pool_handle: k.pool_handle,
                        pe_identifier: 1,
                    },
                )
                .await;
            }
            other => panic!("{other:?}"),
        }
    }
    // The silent one got a keep-alive, did not answer, and its connection was aborted.
    match recv(&mut silent, Protocol::Asap).await {
        Message::Asap(AsapMessage::EndpointKeepAlive(k)) => assert_eq!(k.pe_identifier, Some(2)),
        other => panic!("{other:?}"),
    }
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match silent.recv().await {
                Ok(Event::Lost(_)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "silent PE's connection not closed");
    let mut pu = connect(srv.asap, Protocol::Asap).await;
    assert_eq!(ids(&resolve(&mut pu, "KA", None).await), vec![1]);
    srv.stop().await;
}

#[tokio::test]
async fn many_pes_one_connection_and_limits() {
    let srv = start(|c| {
        c.limits.max_pes_per_connection = 5;
    })
    .await;
    let mut a = connect(srv.asap, Protocol::Asap).await;
    for id in 1..=5 {
        let r = register(
            &mut a,
            &format!("P{id}"),
            pe(id, 7000, Policy::LeastUsed { load: id }),
        )
        .await;
        assert!(!r.reject);
    }
    let r = register(&mut a, "P6", pe(6, 7000, Policy::RoundRobin)).await;
    assert_eq!(
        r.error.as_ref().and_then(|e| e.first_code()),
        Some(CauseCode::LackOfResources)
    );
    srv.stop().await;
}

/// All keep-alives of 2000 PEs on one association fall due in the same tick: the write
/// queue must take them (a proxy PE registers many PEs over one association).
#[tokio::test]
async fn keep_alive_burst_on_one_association() {
    let srv = with_keep_alive(300, 5000).await;
    let (r, mut w) = connect(srv.asap, Protocol::Asap).await.into_split();
    let mut r = r;
    let n = 2000u32;
    for id in 1..=n {
        let m: Message = Registration {
            pool_handle: "Burst".into(),
            pool_element: pe(id, 7000, Policy::RoundRobin),
        }
        .into();
        w.send(&Msg::new(11, 0, m.to_bytes().expect("encode")))
            .await
            .expect("send");
    }
    let (mut responses, mut keep_alives) = (0u32, 0u32);
    while keep_alives < n {
        let ev = tokio::time::timeout(Duration::from_secs(30), r.recv())
            .await
            .expect("traffic within 30 s")
            .expect("association alive");
        match ev {
            Event::Message(m) => match Message::decode(Protocol::Asap, &m.bytes)
                .expect("decodes")
                .message
            {
                Message::Asap(AsapMessage::RegistrationResponse(resp)) => {
                    assert!(!resp.reject, "{resp:?}");
                    responses += 1;
                }
                Message::Asap(AsapMessage::EndpointKeepAlive(_)) => keep_alives += 1,
                other => panic!("{other:?}"),
            },
            Event::Lost(reason) => panic!("association lost: {reason}"),
            _ => {}
        }
    }
    assert_eq!(responses, n);
    srv.stop().await;
}

/// A PU with 16 requests in flight (issue 15's load shape): sent with one
/// `AssocWriter::send_batch` (one write; a message with the wrong PPID in the batch is left
/// out and reported, the others go), answered in order, one answer each.
#[tokio::test]
async fn pipelined_resolutions_in_one_batch_are_all_answered_in_order() {
    let srv = start(|_| {}).await;
    let mut pe_a = connect(srv.asap, Protocol::Asap).await;
    for (h, id) in [("PipeA", 0xA1), ("PipeB", 0xB1)] {
        let r = register(&mut pe_a, h, pe(id, 7000, Policy::RoundRobin)).await;
        assert!(!r.reject);
    }
    let pu = connect(srv.asap, Protocol::Asap).await;
    let (mut rd, mut wr) = pu.into_split();
    let mut batch = Vec::new();
    for i in 0..16 {
        let h = if i % 2 == 0 { "PipeA" } else { "PipeB" };
        let m: Message = HandleResolution::new(h).into();
        batch.push(Msg::new(
            Protocol::Asap.ppid(),
            0,
            m.to_bytes().expect("encodes"),
        ));
        if i == 7 {
            // Wrong PPID for this ASAP endpoint: left out of the write.
            batch.push(Msg::new(
                Protocol::Enrp.ppid(),
                0,
                m.to_bytes().expect("encodes"),
            ));
        }
    }
    let mut buf = Vec::new();
    let r = wr.send_batch(&batch, &mut buf).await;
    assert!(
        matches!(r, Err(asap::transport::TransportError::PpidMismatch { .. })),
        "{r:?}"
    );
    let mut got = Vec::new();
    while got.len() < 16 {
        let ev = tokio::time::timeout(Duration::from_secs(10), rd.recv())
            .await
            .expect("answer in time")
            .expect("open");
        if let Event::Message(m) = ev {
            match Message::decode(Protocol::Asap, &m.bytes)
                .expect("decodes")
                .message
            {
                Message::Asap(AsapMessage::HandleResolutionResponse(r)) => {
                    got.push((r.pool_handle.to_string(), r.pool_elements[0].id))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let want: Vec<(String, u32)> = (0..16)
        .map(|i| {
            if i % 2 == 0 {
                ("PipeA".to_string(), 0xA1)
            } else {
                ("PipeB".to_string(), 0xB1)
            }
        })
        .collect();
    assert_eq!(got, want);
    drop(srv);
}
