//! `rsp-loadgen`: load generator for a registrar (ours or any other speaking ASAP over the
//! chosen transport).
//!
//! Phase 1 registers `--pes` PEs in `--pools` pools over `--pe-connections` associations,
//! each association keeping `--window` REGISTRATIONs in flight, and reports
//! registrations/s. The PE associations then keep answering ENDPOINT_KEEP_ALIVEs.
//!
//! Phase 2 runs `--pu-connections` pool users for `--duration-ms`, each keeping `--window`
//! HANDLE_RESOLUTIONs for random pools in flight, and reports resolutions/s and latency
//! percentiles. The last line of output is one JSON object with all figures.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use asap::transport::{
    AssocReader, AssocWriter, Event, Msg, Transport, TransportConfig, TransportKind,
};
use asap::wire::asap_msg::{EndpointKeepAliveAck, HandleResolution, Registration};
use asap::wire::{
    AsapMessage, HandleResolutionOption, Message, Policy, PoolElementInfo, Protocol,
    TransportParameter, TransportUse,
};
use clap::Parser;

/// `println!` that ignores a closed stdout (e.g. piped into `head`) instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// Registrar load generator: registrations/s, then handle resolutions/s.
#[derive(Debug, Parser)]
#[command(name = "rsp-loadgen", version, about)]
struct Args {
    /// Registrar ASAP address.
    #[arg(long, default_value = "127.0.0.1:3863")]
    registrar: SocketAddr,
    /// Transport (auto|sctp|sctp-udp|tcp).
    #[arg(long, default_value = "tcp")]
    transport: TransportKind,
    /// sctp-udp: local UDP port (0 = any; the registrar on the same host holds 9899).
    #[arg(long, default_value_t = 0)]
    sctp_udp_port: u16,
    /// sctp-udp: the registrar's UDP port.
    #[arg(long, default_value_t = asap::transport::defaults::SCTP_UDP_PORT)]
    sctp_udp_remote_port: u16,
    /// Number of pools.
    #[arg(long, default_value_t = 1000)]
    pools: u32,
    /// Number of PEs (spread round robin over the pools).
    #[arg(long, default_value_t = 10_000)]
    pes: u32,
    /// Associations the PEs register over.
    #[arg(long, default_value_t = 100)]
    pe_connections: u32,
    /// Pool-user associations for the resolution phase.
    #[arg(long, default_value_t = 4)]
    pu_connections: u32,
    /// Requests in flight per association.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Length of the resolution phase, ms.
    #[arg(long, default_value_t = 5000)]
    duration_ms: u64,
    /// Handle Resolution Option items (omit = registrar default).
    #[arg(long)]
    items: Option<u32>,
}

async fn connect(args: &Args) -> anyhow::Result<(AssocReader, AssocWriter)> {
    let mut cfg = TransportConfig::asap(args.transport);
    cfg.sctp_udp.udp_port = args.sctp_udp_port;
    cfg.sctp_udp.remote_udp_port = Some(args.sctp_udp_remote_port);
    let t = Transport::new(cfg);
    let a = t
        .connect(&[args.registrar], &[])
        .await
        .with_context(|| format!("connecting to {}", args.registrar))?;
    Ok(a.into_split())
}

async fn send(w: &mut AssocWriter, m: impl Into<Message>) -> anyhow::Result<()> {
    let m = m.into();
    let b = m.to_bytes()?;
    w.send(&Msg::new(Protocol::Asap.ppid(), 0, b)).await?;
    Ok(())
}

async fn recv(r: &mut AssocReader) -> anyhow::Result<AsapMessage> {
    loop {
        match r.recv().await? {
            Event::Message(m) => match Message::decode(Protocol::Asap, &m.bytes)?.message {
                Message::Asap(a) => return Ok(a),
                Message::Enrp(_) => continue,
            },
            Event::Lost(reason) => bail!("association lost: {reason}"),
            _ => {}
        }
    }
}

fn pool_name(i: u32) -> String {
    format!("pool-{i:05}")
}

fn element(id: u32) -> PoolElementInfo {
    PoolElementInfo {
        id,
        home_server_id: 0,
        registration_life: 300_000,
        user_transport: TransportParameter::Tcp {
            port: 10_000 + (id % 50_000) as u16,
            transport_use: TransportUse::DataOnly,
            address: "127.0.0.1".parse().expect("literal"),
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

/// One PE association: registers `ids`, reports, then answers keep-alives until `stop`.
async fn pe_connection(
    args: Arc<Args>,
    ids: Vec<u32>,
    done: tokio::sync::mpsc::Sender<anyhow::Result<(u32, u32)>>,
    stop: Arc<AtomicBool>,
) {
    let (mut r, mut w) = match connect(&args).await {
        Ok(x) => x,
        Err(e) => {
            let _ = done.send(Err(e)).await;
            return;
        }
    };
    let result: anyhow::Result<(u32, u32)> = async {
        let (mut next, mut inflight, mut ok, mut rejected) = (0usize, 0usize, 0u32, 0u32);
        while next < ids.len() || inflight > 0 {
            while inflight < args.window && next < ids.len() {
                let id = ids[next];
                send(
                    &mut w,
                    Registration {
                        pool_handle: pool_name(id % args.pools).as_str().into(),
                        pool_element: element(id),
                    },
                )
                .await?;
                next += 1;
                inflight += 1;
            }
            match recv(&mut r).await? {
                AsapMessage::RegistrationResponse(resp) => {
                    inflight -= 1;
                    if resp.reject {
                        rejected += 1;
                    } else {
                        ok += 1;
                    }
                }
                AsapMessage::EndpointKeepAlive(k) => {
                    if let Some(id) = k.pe_identifier {
                        send(
                            &mut w,
                            EndpointKeepAliveAck {
                                pool_handle: k.pool_handle,
                                pe_identifier: id,
                            },
                        )
                        .await?;
                    }
                }
                _ => {}
            }
        }
        Ok((ok, rejected))
    }
    .await;
    let failed = result.is_err();
    let _ = done.send(result).await;
    if failed {
        return;
    }
    // Stay registered: answer keep-alives until the run is over.
    while !stop.load(Ordering::Relaxed) {
        let m = tokio::time::timeout(Duration::from_millis(200), recv(&mut r)).await;
        match m {
            Ok(Ok(AsapMessage::EndpointKeepAlive(k))) => {
                if let Some(id) = k.pe_identifier {
                    let ack = EndpointKeepAliveAck {
                        pool_handle: k.pool_handle,
                        pe_identifier: id,
                    };
                    if send(&mut w, ack).await.is_err() {
                        return;
                    }
                }
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(_)) => return,
        }
    }
}

/// Result of one PU association.
struct PuResult {
    ok: u64,
    failed: u64,
    pes_returned: u64,
    latencies_us: Vec<u32>,
}

async fn pu_connection(args: Arc<Args>, seed: u64, until: Instant) -> anyhow::Result<PuResult> {
    let (mut r, mut w) = connect(&args).await?;
    let mut x = seed | 1;
    let mut rand = move || {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut sent_at = std::collections::VecDeque::new();
    let mut res = PuResult {
        ok: 0,
        failed: 0,
        pes_returned: 0,
        latencies_us: Vec::new(),
    };
    loop {
        let now = Instant::now();
        while sent_at.len() < args.window && now < until {
            let pool = (rand() % u64::from(args.pools)) as u32;
            let mut hr = HandleResolution::new(pool_name(pool).as_str());
            hr.option = args.items.map(|items| HandleResolutionOption { items });
            send(&mut w, hr).await?;
            sent_at.push_back(Instant::now());
        }
        if sent_at.is_empty() {
            break;
        }
        if let AsapMessage::HandleResolutionResponse(resp) = recv(&mut r).await? {
            if let Some(t) = sent_at.pop_front() {
                res.latencies_us
                    .push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            if resp.error.is_some() || resp.pool_elements.is_empty() {
                res.failed += 1;
            } else {
                res.ok += 1;
                res.pes_returned += resp.pool_elements.len() as u64;
            }
        }
    }
    Ok(res)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    if args.pools == 0 || args.pe_connections == 0 || args.window == 0 {
        bail!("--pools, --pe-connections and --window must be > 0");
    }

    // ---- phase 1: registrations ----
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::channel(args.pe_connections as usize);
    let t0 = Instant::now();
    for c in 0..args.pe_connections {
        let ids: Vec<u32> = (1..=args.pes)
            .filter(|id| id % args.pe_connections == c)
            .collect();
        tokio::spawn(pe_connection(args.clone(), ids, tx.clone(), stop.clone()));
    }
    drop(tx);
    let (mut ok, mut rejected) = (0u32, 0u32);
    // Each PE task reports once and keeps running (and holding its sender) afterwards.
    for _ in 0..args.pe_connections {
        let Some(r) = rx.recv().await else { break };
        let (o, j) = r?;
        ok += o;
        rejected += j;
    }
    let reg_secs = t0.elapsed().as_secs_f64();
    let reg_rate = f64::from(ok + rejected) / reg_secs;
    out!(
        "registrations: {ok} accepted, {rejected} rejected in {reg_secs:.3} s = {reg_rate:.0}/s \
         ({} associations, window {})",
        args.pe_connections,
        args.window
    );

    // ---- phase 2: handle resolutions ----
    let t1 = Instant::now();
    let until = t1 + Duration::from_millis(args.duration_ms);
    let mut tasks = Vec::new();
    for c in 0..args.pu_connections {
        tasks.push(tokio::spawn(pu_connection(
            args.clone(),
            0x9E37_79B9_7F4A_7C15 ^ u64::from(c),
            until,
        )));
    }
    let (mut hr_ok, mut hr_failed, mut pes_returned, mut lat) = (0u64, 0u64, 0u64, Vec::new());
    for t in tasks {
        let r = t.await??;
        hr_ok += r.ok;
        hr_failed += r.failed;
        pes_returned += r.pes_returned;
        lat.extend(r.latencies_us);
    }
    let hr_secs = t1.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    lat.sort_unstable();
    let hr_rate = (hr_ok + hr_failed) as f64 / hr_secs;
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    out!(
        "handle resolutions: {hr_ok} ok, {hr_failed} failed in {hr_secs:.3} s = {hr_rate:.0}/s \
         ({} associations, window {}; latency p50 {p50} us, p99 {p99} us; {:.2} PEs/response)",
        args.pu_connections,
        args.window,
        pes_returned as f64 / hr_ok.max(1) as f64
    );
    out!(
        "{{\"pes\":{},\"pools\":{},\"registrations_ok\":{ok},\"registrations_rejected\":{rejected},\
         \"registrations_per_s\":{reg_rate:.0},\"resolutions_ok\":{hr_ok},\"resolutions_failed\":{hr_failed},\
         \"resolutions_per_s\":{hr_rate:.0},\"latency_p50_us\":{p50},\"latency_p99_us\":{p99}}}",
        args.pes, args.pools
    );
    if rejected > 0 || hr_failed > 0 {
        bail!("{rejected} registrations rejected, {hr_failed} resolutions failed");
    }
    Ok(())
}
