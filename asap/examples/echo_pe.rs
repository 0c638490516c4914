//! Echo pool element: registers in a pool and echoes every message back.
//!
//! It listens on its user transport (SCTP or TCP) for sessions, registers the transport
//! with a registrar (static `--registrar` list and/or ASAP announces), answers keep-alives,
//! and after every echo sends an ASAP_COOKIE with its state (`pe=<id>;n=<count>`) so a PU
//! that fails over can hand it to the next PE (printed when a COOKIE_ECHO arrives).
//! With `--cookie-state` the count is the session's application state: every echo is
//! prefixed with `#<count> `, and a COOKIE_ECHO (`pe=<old id>;n=<count>`, from this or any
//! other `echo_pe`) restores the count, so after a failover the numbering continues where
//! the failed PE stopped instead of restarting at 1. Ctrl-C deregisters gracefully.
//!
//! ```text
//! cargo run -p asap --example echo_pe -- --registrar 127.0.0.1:3863 --transport tcp \
//!     --pool EchoPool --policy lu --load 20
//! ```

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use asap::pe::{PeConfig, PoolElement, PoolElementConfig};
use asap::session::{ServerEvent, SessionListener};
use asap::transport::{defaults, TransportKind};
use clap::Parser;
use tracing::{info, warn};

/// Echo pool element (RFC 5352 PE with the session layer of RFC 5351 §2.5).
#[derive(Parser, Debug)]
struct Args {
    /// Pool handle to register in.
    #[arg(long, default_value = "EchoPool")]
    pool: String,
    /// Registrar `ADDR[,ADDR...]:PORT` (repeatable); none = announces only.
    #[arg(long)]
    registrar: Vec<String>,
    /// Transport for the registrar association and the user transport: auto, sctp, tcp.
    #[arg(long, default_value = "auto")]
    transport: TransportKind,
    /// Local address of the user transport (port 0 = any).
    #[arg(long, default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// Address registered when listening on a wildcard address.
    #[arg(long, default_value = "127.0.0.1")]
    advertise: IpAddr,
    /// Selection policy: rr, wrr, rand, wrand, prio, lu, lud, plu, rlu.
    #[arg(long, default_value = "rr")]
    policy: String,
    /// Weight (wrr, wrand) or priority (prio).
    #[arg(long, default_value_t = 1)]
    weight: u32,
    /// Load in percent (adaptive policies).
    #[arg(long, default_value_t = 0.0)]
    load: f64,
    /// Load degradation in percent (lud, plu).
    #[arg(long, default_value_t = 0.0)]
    degradation: f64,
    /// Registration life in seconds (re-registration per RFC 5352 T4).
    #[arg(long, default_value_t = 90)]
    life: u64,
    /// Fixed PE identifier, decimal or 0x-hex (default: random).
    #[arg(long, value_parser = common::parse_u32)]
    id: Option<u32>,
    /// Listen for ASAP_SERVER_ANNOUNCE on 239.0.0.50:3863.
    #[arg(long)]
    announce: bool,
    /// SCTP PPID of application data.
    #[arg(long, default_value_t = 0)]
    data_ppid: u32,
    /// Keep the echo count as session state: prefix echoes with `#<count> ` and continue
    /// the count from a COOKIE_ECHO's `n=` (state failover, RFC 5351 §2.5).
    #[arg(long)]
    cookie_state: bool,
}

/// The count in a cookie this example sent (`pe=<id>;n=<count>`).
fn cookie_count(cookie: &[u8]) -> Option<u64> {
    std::str::from_utf8(cookie)
        .ok()?
        .split(';')
        .find_map(|kv| kv.strip_prefix("n="))?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init_logging();
    let args = Args::parse();
    let policy = common::policy(&args.policy, args.weight, args.load, args.degradation)?;
    let listener = SessionListener::bind(args.transport, &[args.listen], args.data_ppid).await?;
    let user = listener.user_transport(Some(args.advertise))?;
    info!(addrs = ?listener.local_addrs()?, kind = ?listener.kind(), "user transport listening");

    let mut cfg = PeConfig::new(args.pool.as_str(), user, policy);
    cfg.identifier = args.id;
    cfg.registration_life = Duration::from_secs(args.life);
    cfg.link.static_registrars = common::registrars(&args.registrar)?;
    let mut pc = PoolElementConfig::tcp(cfg);
    // The registrar association uses the same transport kind as the user transport.
    pc.registrar_transport = listener.kind();
    pc.announce = args.announce.then_some(defaults::ASAP_ANNOUNCE_ADDR);
    // rsplib registrars only accept user addresses the ASAP association also uses.
    if !args.listen.ip().is_unspecified() {
        pc.registrar_local = vec![SocketAddr::new(args.listen.ip(), 0)];
    }
    let mut pe = PoolElement::register(pc).await?;
    let id = pe.identifier();
    info!(pe = format_args!("{id:#010x}"), pool = %args.pool, "pool element started");
    let cookie_state = args.cookie_state;

    loop {
        tokio::select! {
            s = listener.accept() => {
                let mut s = match s {
                    Ok(s) => s,
                    Err(e) => { warn!(error = %e, "accept failed"); continue; }
                };
                let peer = s.peer_addrs().to_vec();
                info!(?peer, "session opened");
                tokio::spawn(async move {
                    let mut count = 0u64;
                    loop {
                        match s.recv().await {
                            Ok(Some(ServerEvent::Data(d))) => {
                                count += 1;
                                let d = if cookie_state {
                                    let mut r = format!("#{count} ").into_bytes();
                                    r.extend_from_slice(&d);
                                    r.into()
                                } else {
                                    d
                                };
                                if s.send(d).await.is_err() {
                                    break;
                                }
                                let cookie = format!("pe={id:08x};n={count}").into_bytes();
                                if s.send_cookie(cookie).await.is_err() {
                                    break;
                                }
                            }
                            Ok(Some(ServerEvent::CookieEcho(c))) => {
                                info!(cookie = %String::from_utf8_lossy(&c), "session taken over (COOKIE_ECHO)");
                                if cookie_state {
                                    match cookie_count(&c) {
                                        Some(n) => {
                                            count = n;
                                            info!(n, "state restored from cookie");
                                        }
                                        None => warn!("cookie without a count; state not restored"),
                                    }
                                }
                            }
                            Ok(Some(ServerEvent::BusinessCard(b))) => {
                                info!(pes = b.pool_elements.len(), "business card received");
                            }
                            Ok(None) => break,
                            Err(e) => { warn!(error = %e, "session error"); break; }
                        }
                    }
                    info!(?peer, echoed = count, "session closed");
                });
            }
            ev = pe.next_event() => match ev {
                Some(ev) => info!(?ev, "PE event"),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => {
                info!("deregistering");
                let confirmed = pe.deregister().await?;
                info!(confirmed, "deregistered");
                return Ok(());
            }
        }
    }
    Ok(())
}
