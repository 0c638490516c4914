//! `rsp-loadgen`: load generator for a registrar (ours or any other speaking ASAP over the
//! chosen transport).
//!
//! Phase 1 registers `--pes` new PEs in `--pools` pools over `--pe-connections` associations,
//! each association keeping `--window` REGISTRATIONs in flight, and reports registrations/s
//! and latency percentiles. Phase 2 re-registers the same PEs `--reregistrations` times
//! (updates of existing entries) and reports the same figures. The PE associations then keep
//! answering ENDPOINT_KEEP_ALIVEs.
//!
//! Phase 3 runs `--pu-connections` pool users for `--duration-ms`, each keeping `--window`
//! HANDLE_RESOLUTIONs for random pools in flight, and reports resolutions/s and latency
//! percentiles. `--transport sctp` uses kernel SCTP (one-to-one associations), as rsplib's
//! `rspregistrar` needs. On a terminal, progress bars on stderr show each phase; the output
//! ends with a summary table and one JSON object with all figures (the last line).
//! Used by BENCHMARKS.md ("Registrar") and the VM scenario `bench-registrar`.
//!
//! Two engines run the same phases and print the same lines, summary and JSON:
//! `--engine tokio` (default; any transport, full decode of every answer) and
//! `--engine blocking` (kernel SCTP and TCP only): one OS thread per association, blocking
//! system calls through `asap::transport::blocking` (one `sendmmsg`/`write` per batch, one
//! `poll` + `recvmmsg`/`read` per burst of answers), every request encoded once before the
//! phase starts (re-registrations re-send the registrations' bytes), answers checked by
//! message type, R flag and top-level parameters only, latencies from a ring of send times —
//! no async runtime and no allocation per request. It exists so that a load generator that
//! shares a single (emulated) CPU with the server is not the bottleneck (issue 15).

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
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

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
    /// Rounds of re-registration of every PE after the first registration (phase 2; the
    /// same PE identifiers, so the registrar updates existing entries). 0 = none.
    #[arg(long, default_value_t = 1)]
    reregistrations: u32,
    /// Keep the PE associations (answering keep-alives) this long after the last phase, ms,
    /// e.g. to read the registrar's memory with all PEs registered.
    #[arg(long, default_value_t = 0)]
    hold_ms: u64,
    /// User transport the PEs announce.
    #[arg(long, value_enum, default_value = "tcp")]
    user_transport: UserTransport,
    /// Address in the PEs' user transport (default: the registrar's address, so that
    /// registrars that filter addresses by the association's scope accept it).
    #[arg(long)]
    pe_address: Option<std::net::IpAddr>,
    /// Registration life the PEs announce, ms.
    #[arg(long, default_value_t = 300_000)]
    registration_life_ms: i32,
    /// Label printed in the summary and the JSON line (e.g. the registrar's name).
    #[arg(long, default_value = "")]
    label: String,
    /// Load engine: `tokio` (any transport) or `blocking` (light: sctp and tcp only).
    #[arg(long, value_enum, default_value = "tokio")]
    engine: Engine,
}

/// How the load is generated (same phases and output either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Engine {
    /// tokio tasks over `asap::transport`, every answer fully decoded.
    Tokio,
    /// One blocking thread per association, requests encoded once, answers checked by type.
    Blocking,
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

/// User transport protocol the PEs announce (RFC 5354 §3.3–3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum UserTransport {
    /// TCP Transport parameter, one address.
    Tcp,
    /// SCTP Transport parameter, one address (as rsplib's rspserver).
    Sctp,
}

fn element(args: &Args, id: u32) -> PoolElementInfo {
    let port = 10_000 + (id % 50_000) as u16;
    let address = args.pe_address.unwrap_or(args.registrar.ip());
    let transport_use = TransportUse::DataOnly;
    PoolElementInfo {
        id,
        home_server_id: 0,
        registration_life: args.registration_life_ms,
        user_transport: match args.user_transport {
            UserTransport::Tcp => TransportParameter::Tcp {
                port,
                transport_use,
                address,
            },
            UserTransport::Sctp => TransportParameter::Sctp {
                port,
                transport_use,
                addresses: vec![address],
            },
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

/// Figures of one registration round on one association.
#[derive(Default)]
struct RegRound {
    ok: u32,
    rejected: u32,
    latencies_us: Vec<u32>,
}

/// Registers (or re-registers) `ids` over one association with `window` requests in flight.
/// Answers ENDPOINT_KEEP_ALIVEs on the way. Latency is measured per request, assuming the
/// registrar answers one association's requests in order (ours and rsplib's do).
async fn register_round(
    args: &Args,
    r: &mut AssocReader,
    w: &mut AssocWriter,
    ids: &[u32],
    progress: &ProgressBar,
) -> anyhow::Result<RegRound> {
    let mut round = RegRound {
        latencies_us: Vec::with_capacity(ids.len()),
        ..RegRound::default()
    };
    let mut sent_at = std::collections::VecDeque::with_capacity(args.window);
    let mut next = 0usize;
    while next < ids.len() || !sent_at.is_empty() {
        while sent_at.len() < args.window && next < ids.len() {
            let id = ids[next];
            send(
                w,
                Registration {
                    pool_handle: pool_name(id % args.pools).as_str().into(),
                    pool_element: element(args, id),
                },
            )
            .await?;
            sent_at.push_back(Instant::now());
            next += 1;
        }
        match recv(r).await? {
            AsapMessage::RegistrationResponse(resp) => {
                if let Some(t) = sent_at.pop_front() {
                    round
                        .latencies_us
                        .push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
                if resp.reject {
                    round.rejected += 1;
                } else {
                    round.ok += 1;
                }
                progress.inc(1);
            }
            AsapMessage::EndpointKeepAlive(k) => {
                if let Some(id) = k.pe_identifier {
                    send(
                        w,
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
    Ok(round)
}

/// One PE association: registers `ids` (phase 1) and reports; then, for each of the
/// `--reregistrations` rounds, waits at `barrier` for the other associations and
/// re-registers the same PEs (phase 2) and reports; then answers keep-alives until `stop`.
async fn pe_connection(
    args: Arc<Args>,
    ids: Vec<u32>,
    done: tokio::sync::mpsc::Sender<anyhow::Result<RegRound>>,
    barrier: Arc<tokio::sync::Barrier>,
    progress: ProgressBar,
    stop: Arc<AtomicBool>,
) {
    let (mut r, mut w) = match connect(&args).await {
        Ok(x) => x,
        Err(e) => {
            let _ = done.send(Err(e)).await;
            return;
        }
    };
    for _ in 0..=args.reregistrations {
        let result = register_round(&args, &mut r, &mut w, &ids, &progress).await;
        let failed = result.is_err();
        let _ = done.send(result).await;
        if failed {
            return;
        }
        barrier.wait().await;
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

async fn pu_connection(
    args: Arc<Args>,
    seed: u64,
    until: Instant,
    progress: ProgressBar,
) -> anyhow::Result<PuResult> {
    let (mut r, mut w) = connect(&args).await?;
    let mut rand = rng(seed);
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
            progress.inc(1);
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

/// Rate, latency percentiles and counts of one phase.
struct Phase {
    name: &'static str,
    ok: u64,
    failed: u64,
    secs: f64,
    latencies_us: Vec<u32>,
}

impl Phase {
    fn new(name: &'static str, ok: u64, failed: u64, secs: f64, mut lat: Vec<u32>) -> Self {
        lat.sort_unstable();
        Phase {
            name,
            ok,
            failed,
            secs,
            latencies_us: lat,
        }
    }
    fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            (self.ok + self.failed) as f64 / self.secs
        } else {
            0.0
        }
    }
    fn p(&self, q: f64) -> u32 {
        percentile(&self.latencies_us, q)
    }
}

/// A progress bar on stderr for `len` operations; indicatif draws nothing when stderr is not
/// a terminal, so logs and pipes get only the printed lines.
fn bar(multi: &MultiProgress, len: u64, what: &str) -> ProgressBar {
    let pb = multi.add(ProgressBar::new(len));
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>18} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} eta {eta}",
        )
        .expect("static template"),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// A spinner-like counter for a timed phase (length = expected duration in ms).
fn timed_bar(multi: &MultiProgress, what: &str) -> ProgressBar {
    let pb = multi.add(ProgressBar::no_length());
    pb.set_style(
        ProgressStyle::with_template("{prefix:>18} [{elapsed_precise}] {pos} done, {per_sec}")
            .expect("static template"),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// Prints the line of registration round `round` (0 = first registration) and returns its
/// phase.
fn reg_phase(args: &Args, round: u32, ok: u64, rejected: u64, secs: f64, lat: Vec<u32>) -> Phase {
    let name = if round == 0 {
        "registrations"
    } else {
        "re-registrations"
    };
    let ph = Phase::new(name, ok, rejected, secs, lat);
    out!(
        "{name}: {ok} accepted, {rejected} rejected in {secs:.3} s = {:.0}/s \
         ({} associations, window {}; latency p50 {} us, p99 {} us)",
        ph.rate(),
        args.pe_connections,
        args.window,
        ph.p(0.5),
        ph.p(0.99)
    );
    ph
}

/// Prints the line of the resolution phase and returns it.
fn hres_phase(
    args: &Args,
    ok: u64,
    failed: u64,
    pes_returned: u64,
    secs: f64,
    lat: Vec<u32>,
) -> Phase {
    let ph = Phase::new("handle resolutions", ok, failed, secs, lat);
    out!(
        "handle resolutions: {ok} ok, {failed} failed in {secs:.3} s = {:.0}/s \
         ({} associations, window {}; latency p50 {} us, p99 {} us; {:.2} PEs/response)",
        ph.rate(),
        args.pu_connections,
        args.window,
        ph.p(0.5),
        ph.p(0.99),
        pes_returned as f64 / ok.max(1) as f64
    );
    ph
}

/// The tokio engine: all phases; returns them in order.
async fn run_tokio(args: Arc<Args>) -> anyhow::Result<Vec<Phase>> {
    let multi = MultiProgress::new();
    let mut phases: Vec<Phase> = Vec::new();

    // ---- phase 1 (and 2): registrations, re-registrations ----
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::channel(args.pe_connections as usize);
    let barrier = Arc::new(tokio::sync::Barrier::new(args.pe_connections as usize + 1));
    let reg_bar = bar(&multi, u64::from(args.pes), "registrations");
    let mut t0 = Instant::now();
    for c in 0..args.pe_connections {
        tokio::spawn(pe_connection(
            args.clone(),
            pe_ids(&args, c),
            tx.clone(),
            barrier.clone(),
            reg_bar.clone(),
            stop.clone(),
        ));
    }
    drop(tx);
    for round in 0..=args.reregistrations {
        let (mut ok, mut rejected, mut lat) = (0u64, 0u64, Vec::new());
        // Each PE task reports once per round and keeps running (and holding its sender).
        for _ in 0..args.pe_connections {
            let Some(r) = rx.recv().await else { break };
            let r = r?;
            ok += u64::from(r.ok);
            rejected += u64::from(r.rejected);
            lat.extend(r.latencies_us);
        }
        let secs = t0.elapsed().as_secs_f64();
        reg_bar.finish_and_clear();
        phases.push(reg_phase(&args, round, ok, rejected, secs, lat));
        if round < args.reregistrations {
            reg_bar.reset();
            reg_bar.set_prefix("re-registrations");
            t0 = Instant::now();
        }
        barrier.wait().await;
    }

    // ---- phase 3: handle resolutions ----
    if args.pu_connections > 0 && args.duration_ms > 0 {
        let hr_bar = timed_bar(&multi, "resolutions");
        let t1 = Instant::now();
        let until = t1 + Duration::from_millis(args.duration_ms);
        let mut tasks = Vec::new();
        for c in 0..args.pu_connections {
            tasks.push(tokio::spawn(pu_connection(
                args.clone(),
                pu_seed(c),
                until,
                hr_bar.clone(),
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
        let secs = t1.elapsed().as_secs_f64();
        hr_bar.finish_and_clear();
        phases.push(hres_phase(&args, hr_ok, hr_failed, pes_returned, secs, lat));
    }
    if args.hold_ms > 0 {
        out!("holding {} PEs for {} ms", args.pes, args.hold_ms);
        tokio::time::sleep(Duration::from_millis(args.hold_ms)).await;
    }
    stop.store(true, Ordering::Relaxed);
    Ok(phases)
}

/// The PE identifiers association `c` registers.
fn pe_ids(args: &Args, c: u32) -> Vec<u32> {
    (1..=args.pes)
        .filter(|id| id % args.pe_connections == c)
        .collect()
}

/// Seed of PU association `c`'s pool choice.
fn pu_seed(c: u32) -> u64 {
    0x9E37_79B9_7F4A_7C15 ^ u64::from(c)
}

/// xorshift64* from `seed`: the PUs' pool choice.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    if args.pools == 0 || args.pe_connections == 0 || args.window == 0 {
        bail!("--pools, --pe-connections and --window must be > 0");
    }
    let phases = match args.engine {
        Engine::Blocking => light::run(&args)?,
        Engine::Tokio => tokio::runtime::Runtime::new()?.block_on(run_tokio(args.clone()))?,
    };
    summary(&args, &phases)
}

/// Prints the summary table and the JSON line; fails when any request failed.
fn summary(args: &Args, phases: &[Phase]) -> anyhow::Result<()> {
    // ---- summary ----
    let label = if args.label.is_empty() {
        args.registrar.to_string()
    } else {
        format!("{} ({})", args.label, args.registrar)
    };
    out!(
        "summary: {label}, {} over {:?}, {} PEs in {} pools",
        "ASAP",
        args.transport,
        args.pes,
        args.pools
    );
    out!(
        "  {:<20} {:>10} {:>8} {:>10} {:>10} {:>10}",
        "phase",
        "ok",
        "failed",
        "per s",
        "p50 us",
        "p99 us"
    );
    for ph in phases {
        out!(
            "  {:<20} {:>10} {:>8} {:>10.0} {:>10} {:>10}",
            ph.name,
            ph.ok,
            ph.failed,
            ph.rate(),
            ph.p(0.5),
            ph.p(0.99)
        );
    }
    let mut json = format!(
        "{{\"label\":\"{}\",\"pes\":{},\"pools\":{},\"window\":{}",
        args.label.replace(['"', '\\'], "_"),
        args.pes,
        args.pools,
        args.window
    );
    for ph in phases {
        let key = match ph.name {
            "registrations" => "registrations",
            "re-registrations" => "reregistrations",
            _ => "resolutions",
        };
        json.push_str(&format!(
            ",\"{key}_ok\":{},\"{key}_failed\":{},\"{key}_per_s\":{:.0},\
             \"{key}_p50_us\":{},\"{key}_p99_us\":{}",
            ph.ok,
            ph.failed,
            ph.rate(),
            ph.p(0.5),
            ph.p(0.99)
        ));
    }
    json.push('}');
    out!("{json}");
    let failed: u64 = phases.iter().map(|p| p.failed).sum();
    if failed > 0 {
        bail!("{failed} requests rejected or failed");
    }
    Ok(())
}

/// The blocking engine (`--engine blocking`): one OS thread per association, no async
/// runtime, requests encoded once, answers checked without a full decode.
mod light {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Barrier};
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context};
    use asap::transport::blocking::BlockingAssoc;
    use asap::transport::TransportKind;
    use asap::wire::asap_msg::{
        EndpointKeepAliveAck, HandleResolution, Registration, RESPONSE_REJECT,
    };
    use asap::wire::header::CommonHeader;
    use asap::wire::{AsapMessage, AsapType, HandleResolutionOption, Message, ParamType, Protocol};
    use bytes::Bytes;

    use super::{element, hres_phase, pe_ids, pool_name, pu_seed, reg_phase, rng};
    use super::{Args, Phase, RegRound};

    /// How long a PE association waits for a keep-alive before it looks at the stop flag.
    const IDLE_POLL: Duration = Duration::from_millis(200);

    /// What one answer was, from its header and top-level parameters.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Answer {
        /// The expected response, accepted (resolutions: with this many PEs).
        Ok(u32),
        /// The expected response, refused (R flag, Operation Error, no PE) or another
        /// message type in its place (e.g. ASAP_ERROR).
        Failed,
        /// An ENDPOINT_KEEP_ALIVE (not an answer): acknowledged, not counted.
        KeepAlive,
    }

    /// Classifies an answer expected to be of type `want`: the message type, the R flag, and
    /// for resolution responses the top-level Pool Element and Operation Error parameters.
    fn classify(m: &[u8], want: AsapType) -> Answer {
        let Some(h) = CommonHeader::peek(m) else {
            return Answer::Failed;
        };
        let t = AsapType::from_code(h.msg_type);
        if t == AsapType::EndpointKeepAlive {
            return Answer::KeepAlive;
        }
        if t != want {
            return Answer::Failed;
        }
        if want == AsapType::RegistrationResponse {
            return if h.flags & RESPONSE_REJECT != 0 {
                Answer::Failed
            } else {
                Answer::Ok(0)
            };
        }
        // walk the top-level TLVs (RFC 5354 §2: type, length incl. the 4-byte TLV header,
        // padded to 4)
        let end = usize::from(h.length).min(m.len());
        let (mut at, mut pes) = (4usize, 0u32);
        while at + 4 <= end {
            let ty = u16::from_be_bytes([m[at], m[at + 1]]);
            let len = usize::from(u16::from_be_bytes([m[at + 2], m[at + 3]]));
            if len < 4 {
                return Answer::Failed;
            }
            match ParamType::from_code(ty) {
                ParamType::OperationError => return Answer::Failed,
                ParamType::PoolElement => pes += 1,
                _ => {}
            }
            at += (len + 3) & !3;
        }
        if pes == 0 {
            Answer::Failed
        } else {
            Answer::Ok(pes)
        }
    }

    /// Send times of the requests in flight, oldest first (answers come in order on one
    /// association and stream).
    struct Ring {
        t: Vec<Instant>,
        head: usize,
        len: usize,
    }

    impl Ring {
        fn new(window: usize) -> Self {
            Ring {
                t: vec![Instant::now(); window],
                head: 0,
                len: 0,
            }
        }
        fn push(&mut self, at: Instant) {
            let n = self.t.len();
            self.t[(self.head + self.len) % n] = at;
            self.len += 1;
        }
        /// Microseconds since the oldest send, which it removes.
        fn pop_us(&mut self, now: Instant) -> Option<u32> {
            if self.len == 0 {
                return None;
            }
            let at = self.t[self.head];
            self.head = (self.head + 1) % self.t.len();
            self.len -= 1;
            Some(u32::try_from(now.saturating_duration_since(at).as_micros()).unwrap_or(u32::MAX))
        }
    }

    fn connect(args: &Args) -> anyhow::Result<BlockingAssoc> {
        BlockingAssoc::connect(
            args.transport,
            args.registrar,
            asap::transport::defaults::CONNECT_TIMEOUT,
        )
        .with_context(|| format!("connecting to {}", args.registrar))
    }

    /// Acknowledges the keep-alives in `pending` (raw messages) and empties it.
    fn ack_keep_alives(a: &mut BlockingAssoc, pending: &mut Vec<Bytes>) -> anyhow::Result<()> {
        for k in pending.drain(..) {
            if let Message::Asap(AsapMessage::EndpointKeepAlive(k)) =
                Message::decode(Protocol::Asap, &k)?.message
            {
                if let Some(id) = k.pe_identifier {
                    let ack = Message::from(EndpointKeepAliveAck {
                        pool_handle: k.pool_handle,
                        pe_identifier: id,
                    })
                    .to_bytes()?;
                    a.send(&[&ack], Protocol::Asap.ppid())?;
                }
            }
        }
        Ok(())
    }

    /// Keeps `window` of `reqs` in flight on `a`, request `i` being `reqs[pick(i)]`, until
    /// `more(sent)` says stop and every answer is in. Answers are classified by `check`;
    /// returns (accepted, failed, PEs returned) and appends the latencies to `lat`.
    fn drive(
        a: &mut BlockingAssoc,
        window: usize,
        check: impl Fn(&[u8]) -> Answer,
        reqs: &[Bytes],
        mut pick: impl FnMut(u64) -> usize,
        mut more: impl FnMut(u64) -> bool,
        lat: &mut Vec<u32>,
    ) -> anyhow::Result<(u64, u64, u64)> {
        let ppid = Protocol::Asap.ppid();
        let mut ring = Ring::new(window);
        let mut batch: Vec<&[u8]> = Vec::with_capacity(window);
        let mut keep_alives: Vec<Bytes> = Vec::new();
        let (mut sent, mut ok, mut failed, mut pes) = (0u64, 0u64, 0u64, 0u64);
        loop {
            batch.clear();
            while ring.len + batch.len() < window && more(sent) {
                batch.push(&reqs[pick(sent)]);
                sent += 1;
            }
            if !batch.is_empty() {
                let now = Instant::now();
                a.send(&batch, ppid)?;
                for _ in 0..batch.len() {
                    ring.push(now);
                }
            }
            if ring.len == 0 {
                break;
            }
            a.recv(None, |m| match check(m) {
                Answer::KeepAlive => keep_alives.push(Bytes::copy_from_slice(m)),
                answer => {
                    if let Some(us) = ring.pop_us(Instant::now()) {
                        lat.push(us);
                    }
                    match answer {
                        Answer::Ok(n) => {
                            ok += 1;
                            pes += u64::from(n);
                        }
                        _ => failed += 1,
                    }
                }
            })?;
            if !keep_alives.is_empty() {
                ack_keep_alives(a, &mut keep_alives)?;
            }
        }
        Ok((ok, failed, pes))
    }

    /// One PE association: the registration rounds (reported through `done`, separated by
    /// `barrier`), then keep-alives until `stop`.
    fn pe_thread(
        args: &Args,
        ids: &[u32],
        done: &mpsc::Sender<anyhow::Result<RegRound>>,
        barrier: &Barrier,
        stop: &AtomicBool,
    ) {
        let fail = |e: anyhow::Error| {
            let _ = done.send(Err(e));
        };
        let mut a = match connect(args) {
            Ok(a) => a,
            Err(e) => return fail(e),
        };
        // every REGISTRATION encoded once; the re-registrations send the same bytes
        let reqs: anyhow::Result<Vec<Bytes>> = ids
            .iter()
            .map(|&id| {
                Ok(Message::from(Registration {
                    pool_handle: pool_name(id % args.pools).as_str().into(),
                    pool_element: element(args, id),
                })
                .to_bytes()?)
            })
            .collect();
        let reqs = match reqs {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let n = reqs.len() as u64;
        for _ in 0..=args.reregistrations {
            let mut lat = Vec::with_capacity(reqs.len());
            let r = drive(
                &mut a,
                args.window,
                |m| classify(m, AsapType::RegistrationResponse),
                &reqs,
                |i| i as usize,
                |sent| sent < n,
                &mut lat,
            );
            let failed = r.is_err();
            let _ = done.send(r.map(|(ok, rejected, _)| RegRound {
                ok: ok as u32,
                rejected: rejected as u32,
                latencies_us: lat,
            }));
            if failed {
                return;
            }
            barrier.wait();
        }
        // stay registered: answer keep-alives until the run is over
        let mut keep_alives = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let r = a.recv(Some(IDLE_POLL), |m| {
                if CommonHeader::peek(m).map(|h| AsapType::from_code(h.msg_type))
                    == Some(AsapType::EndpointKeepAlive)
                {
                    keep_alives.push(Bytes::copy_from_slice(m));
                }
            });
            if r.is_err() || ack_keep_alives(&mut a, &mut keep_alives).is_err() {
                return;
            }
        }
    }

    /// One PU association: HANDLE_RESOLUTIONs for random pools until `until`.
    fn pu_thread(args: &Args, seed: u64, until: Instant) -> anyhow::Result<super::PuResult> {
        let mut a = connect(args)?;
        // one encoded HANDLE_RESOLUTION per pool
        let reqs = (0..args.pools)
            .map(|p| {
                let mut hr = HandleResolution::new(pool_name(p).as_str());
                hr.option = args.items.map(|items| HandleResolutionOption { items });
                Ok(Message::from(hr).to_bytes()?)
            })
            .collect::<anyhow::Result<Vec<Bytes>>>()?;
        let mut rand = rng(seed);
        let pools = u64::from(args.pools);
        let mut lat = Vec::with_capacity(1 << 20);
        let (ok, failed, pes_returned) = drive(
            &mut a,
            args.window,
            |m| classify(m, AsapType::HandleResolutionResponse),
            &reqs,
            |_| (rand() % pools) as usize,
            |_| Instant::now() < until,
            &mut lat,
        )?;
        Ok(super::PuResult {
            ok,
            failed,
            pes_returned,
            latencies_us: lat,
        })
    }

    /// All phases with the blocking engine; returns them in order.
    pub(super) fn run(args: &Args) -> anyhow::Result<Vec<Phase>> {
        if !matches!(args.transport, TransportKind::Sctp | TransportKind::Tcp) {
            bail!("--engine blocking speaks --transport sctp or tcp");
        }
        let mut phases = Vec::new();
        let stop = AtomicBool::new(false);
        let barrier = Barrier::new(args.pe_connections as usize + 1);
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let mut t0 = Instant::now();
            for c in 0..args.pe_connections {
                let (tx, barrier, stop) = (tx.clone(), &barrier, &stop);
                let ids = pe_ids(args, c);
                scope.spawn(move || pe_thread(args, &ids, &tx, barrier, stop));
            }
            drop(tx);
            // on an error, let the PE threads go (they are past the barrier or gone)
            let result = (|| {
                for round in 0..=args.reregistrations {
                    let (mut ok, mut rejected, mut lat) = (0u64, 0u64, Vec::new());
                    for _ in 0..args.pe_connections {
                        let r = rx.recv().context("a PE association ended")??;
                        ok += u64::from(r.ok);
                        rejected += u64::from(r.rejected);
                        lat.extend(r.latencies_us);
                    }
                    let secs = t0.elapsed().as_secs_f64();
                    phases.push(reg_phase(args, round, ok, rejected, secs, lat));
                    t0 = Instant::now();
                    barrier.wait();
                }
                if args.pu_connections > 0 && args.duration_ms > 0 {
                    let t1 = Instant::now();
                    let until = t1 + Duration::from_millis(args.duration_ms);
                    let pus: Vec<_> = (0..args.pu_connections)
                        .map(|c| scope.spawn(move || pu_thread(args, pu_seed(c), until)))
                        .collect();
                    let (mut ok, mut failed, mut pes, mut lat) = (0u64, 0u64, 0u64, Vec::new());
                    for t in pus {
                        let r = t
                            .join()
                            .map_err(|_| anyhow::anyhow!("a PU thread panicked"))??;
                        ok += r.ok;
                        failed += r.failed;
                        pes += r.pes_returned;
                        lat.extend(r.latencies_us);
                    }
                    let secs = t1.elapsed().as_secs_f64();
                    phases.push(hres_phase(args, ok, failed, pes, secs, lat));
                }
                if args.hold_ms > 0 {
                    out!("holding {} PEs for {} ms", args.pes, args.hold_ms);
                    std::thread::sleep(Duration::from_millis(args.hold_ms));
                }
                Ok(())
            })();
            stop.store(true, Ordering::Relaxed);
            result
        })?;
        Ok(phases)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use asap::wire::asap_msg::{HandleResolutionResponse, RegistrationResponse};
        use asap::wire::{OperationError, PoolElementInfo};

        fn resolution_response(pes: u32, error: Option<OperationError>) -> Bytes {
            let args = <Args as clap::Parser>::parse_from(["rsp-loadgen"]);
            Message::from(HandleResolutionResponse {
                accept_updates: false,
                pool_handle: "pool-00000".into(),
                policy: None,
                pool_elements: (1..=pes)
                    .map(|id| element(&args, id))
                    .collect::<Vec<PoolElementInfo>>(),
                error,
            })
            .to_bytes()
            .unwrap()
        }

        /// The answer check counts PEs, and refusals and wrong types as failures.
        #[test]
        fn classify_counts_pes_and_failures() {
            let want = AsapType::HandleResolutionResponse;
            assert_eq!(classify(&resolution_response(3, None), want), Answer::Ok(3));
            assert_eq!(
                classify(&resolution_response(0, None), want),
                Answer::Failed
            );
            let err = OperationError::single(asap::wire::ErrorCause::new(
                asap::wire::CauseCode::UnknownPoolHandle,
                Vec::new(),
            ));
            assert_eq!(
                classify(&resolution_response(0, Some(err)), want),
                Answer::Failed
            );
            let reg = |reject| {
                Message::from(RegistrationResponse {
                    reject,
                    pool_handle: "p".into(),
                    pe_identifier: 7,
                    error: None,
                })
                .to_bytes()
                .unwrap()
            };
            let want = AsapType::RegistrationResponse;
            assert_eq!(classify(&reg(false), want), Answer::Ok(0));
            assert_eq!(classify(&reg(true), want), Answer::Failed);
            assert_eq!(
                classify(&reg(false), AsapType::HandleResolutionResponse),
                Answer::Failed
            );
            assert_eq!(classify(&[1, 0], want), Answer::Failed);
        }

        /// Latencies come out oldest first, across the ring's wrap.
        #[test]
        fn ring_is_fifo() {
            let t0 = Instant::now();
            let mut ring = Ring::new(2);
            for round in 0..3u64 {
                ring.push(t0 + Duration::from_micros(round * 10));
                ring.push(t0 + Duration::from_micros(round * 10 + 5));
                let now = t0 + Duration::from_micros(100);
                assert_eq!(ring.pop_us(now), Some(100 - round as u32 * 10));
                assert_eq!(ring.pop_us(now), Some(95 - round as u32 * 10));
                assert_eq!(ring.pop_us(now), None);
            }
        }
    }
}
