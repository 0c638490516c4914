//! The drivers of `rsp serve`, `rsp term` and `rsp monitor` (thin: the protocol logic is
//! in `asap` and in `rsp_tools::{serve, monitor}`).

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use asap::csp::{run_reporter, CspReporter, CspReporterConfig, CspStatus};
use asap::pe::PoolElement;
use asap::pu::PoolUser;
use asap::session::SessionEvent;
use asap::transport::parse_addr_list;
use asap::wire::csp::{ComponentGroup, ComponentId, CSP_PORT};
use rsp_tools::monitor::{Monitor, ReportView};
use rsp_tools::parse_endpoint;
use rsp_tools::serve::{parse_policy, ServeStats, Service};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{CspArgs, MonitorArgs, PoolNetArgs, ServeArgs, TermArgs};

fn registrars(net: &PoolNetArgs) -> Result<Vec<Vec<std::net::SocketAddr>>, String> {
    if net.registrar.is_empty() && !net.announce {
        return Err("no registrar: give --registrar ADDR:PORT (repeatable) or --announce".into());
    }
    net.registrar
        .iter()
        .map(|r| parse_addr_list(r).map_err(|e| format!("--registrar {r}: {e}")))
        .collect()
}

fn secs(what: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{what} {s}: give a positive number of seconds"))
}

/// The CSP target and interval, if reporting is on.
fn csp_target(c: &CspArgs) -> Result<Option<(std::net::SocketAddr, Duration)>, String> {
    match &c.csp {
        None => Ok(None),
        Some(s) => Ok(Some((
            parse_endpoint(s, CSP_PORT).map_err(|e| format!("--csp: {e}"))?,
            Duration::from_millis(c.csp_interval),
        ))),
    }
}

/// Completes on SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

pub(super) async fn serve(a: &ServeArgs) -> Result<(), String> {
    let service = if a.echo {
        Service::Echo
    } else if a.discard {
        Service::Discard
    } else {
        Service::Daytime
    };
    let policy = parse_policy(&a.policy)?;
    let regs = registrars(&a.net)?;
    let csp = csp_target(&a.csp)?;
    // A random non-zero identifier unless given (RFC 5351 §3.1); CSP reports carry it.
    let id = a.id.unwrap_or_else(|| rand::random::<u32>().max(1));
    let mut pe = PoolElement::builder(a.pool.as_str())
        .transport(a.net.transport)
        .listen(a.listen)
        .policy(policy)
        .identifier(id)
        .on_event(|ev| tracing::info!(?ev, "PE event"));
    for r in regs {
        pe = pe.registrar_addrs(r);
    }
    if a.net.announce {
        pe = pe.announces();
    }
    if let Some(ip) = a.advertise {
        pe = pe.advertise(ip);
    }
    let stats = Arc::new(ServeStats::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let reporter = csp.map(|(target, interval)| {
        let mut cfg = CspReporterConfig::new(
            ComponentId::new(ComponentGroup::PoolElement, id.into()),
            interval,
        );
        cfg.location = format!("{}: {} {}", cfg.location, a.pool, service.name());
        let st = stats.clone();
        tokio::spawn(run_reporter(
            target,
            CspReporter::new(cfg),
            move || CspStatus::text(st.status(service)),
            async {
                let _ = stop_rx.await;
            },
        ))
    });
    eprintln!(
        "rsp serve: PE {id:#010x} serving {} in pool {}",
        service.name(),
        a.pool
    );
    let st = stats.clone();
    let result = pe
        .serve(move |s| rsp_tools::serve::session(s, service, st.clone()))
        .with_graceful_shutdown(async {
            stop_signal().await;
            eprintln!("rsp serve: deregistering");
        })
        .await
        .map_err(|e| format!("pool {}: {e}", a.pool));
    let _ = stop_tx.send(());
    if let Some(t) = reporter {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    eprintln!(
        "rsp serve: stopped after {} sessions",
        stats
            .sessions_total
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    result
}

pub(super) async fn term(a: &TermArgs) -> Result<(), String> {
    let regs = registrars(&a.net)?;
    let timeout = secs("--timeout", a.timeout)?;
    let mut pu = PoolUser::builder(a.pool.as_str())
        .transport(a.net.transport)
        .call_timeout(timeout);
    for r in regs {
        pu = pu.registrar_addrs(r);
    }
    if a.net.announce {
        pu = pu.announces();
    }
    let mut session = pu
        .connect()
        .await
        .map_err(|e| format!("pool {}: {e}", a.pool))?;
    if let Some(pe) = session.current_pe() {
        eprintln!("rsp term: connected to PE {:#010x}", pe.id);
    }
    let linger = Duration::from_millis(a.linger);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut input_open = true;
    let mut last_data = Instant::now();
    let mut stdout = std::io::stdout();
    loop {
        let idle = async {
            if input_open {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep_until((last_data + linger).into()).await
            }
        };
        tokio::select! {
            line = lines.next_line(), if input_open => match line {
                Ok(Some(l)) => {
                    let mut b = l.into_bytes();
                    b.push(b'\n');
                    session.send(b).await.map_err(|e| format!("pool {}: {e}", a.pool))?;
                }
                Ok(None) => {
                    input_open = false;
                    last_data = Instant::now();
                }
                Err(e) => return Err(format!("reading stdin: {e}")),
            },
            ev = session.recv() => match ev {
                Some(SessionEvent::Data(d)) => {
                    last_data = Instant::now();
                    let _ = stdout.write_all(&d);
                    let _ = stdout.flush();
                }
                Some(SessionEvent::Failover(f)) => eprintln!(
                    "rsp term: failover {:#010x} -> {:#010x} ({:?})",
                    f.from, f.to, f.reason
                ),
                Some(SessionEvent::Failed(e)) => {
                    return Err(format!("pool {}: session failed: {e}", a.pool))
                }
                Some(_) => {}
                None => break,
            },
            _ = idle => break,
        }
    }
    session.close().await;
    Ok(())
}

pub(super) async fn monitor(a: &MonitorArgs) -> Result<(), String> {
    let addr = parse_endpoint(&a.listen, CSP_PORT).map_err(|e| format!("--listen: {e}"))?;
    let refresh = secs("--refresh", a.refresh)?;
    let sock = tokio::net::UdpSocket::bind(addr).await.map_err(|e| {
        format!(
            "--listen {addr}: cannot bind UDP: {e} (another monitor running? pick another port)"
        )
    })?;
    if a.json {
        eprintln!(
            "rsp monitor: listening on UDP {}",
            sock.local_addr().unwrap_or(addr)
        );
    }
    let mut m = Monitor::new();
    let mut tick = tokio::time::interval(refresh);
    let mut buf = vec![0u8; 65536];
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (len, from) = r.map_err(|e| format!("receiving on {addr}: {e}"))?;
                match m.on_datagram(Instant::now(), from, &buf[..len]) {
                    Ok((report, update)) => {
                        if a.json {
                            if let Ok(j) = serde_json::to_string(&ReportView::new(from, &report, &update)) {
                                let _ = writeln!(stdout, "{j}");
                                let _ = stdout.flush();
                            }
                        }
                    }
                    Err(e) => tracing::warn!(%from, error = %e, "not a CSP report"),
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let gone = m.expire(now);
                if a.json {
                    for id in gone {
                        let _ = writeln!(stdout, "{}", serde_json::json!({"event": "expired", "sender": id.to_string()}));
                    }
                } else {
                    let _ = write!(
                        stdout,
                        "\x1b[H\x1b[2Jrsp monitor on UDP {addr}: {} components, {} undecodable datagrams\n{}",
                        m.entries().count(),
                        m.errors,
                        m.table(now)
                    );
                }
                let _ = stdout.flush();
            }
            _ = stop_signal() => return Ok(()),
        }
    }
}
