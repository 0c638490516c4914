//! A minimal Prometheus text-format endpoint (`GET /metrics`, exposition format 0.0.4) over
//! the driver's [`Stats`]. Every request gets the full page; the connection then closes.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use enrp_server::core::RemovalReason;
use enrp_server::driver::Stats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Renders all metrics.
fn render(s: &Stats) -> String {
    let mut o = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(o, "{name}{labels} {v}");
        }
    };
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    metric(
        "enrp_registrations_total",
        "counter",
        "Accepted ASAP registrations and re-registrations.",
        &[(String::new(), g(&s.registrations))],
    );
    metric(
        "enrp_registrations_rejected_total",
        "counter",
        "Refused ASAP registrations.",
        &[(String::new(), g(&s.registrations_rejected))],
    );
    metric(
        "enrp_handle_resolutions_total",
        "counter",
        "Handle resolutions answered with pool elements.",
        &[(String::new(), g(&s.resolutions))],
    );
    metric(
        "enrp_handle_resolutions_failed_total",
        "counter",
        "Handle resolutions answered with an Operation Error.",
        &[(String::new(), g(&s.resolutions_failed))],
    );
    let removals: Vec<(String, u64)> = RemovalReason::ALL
        .iter()
        .zip(s.removals.iter())
        .map(|(r, c)| (format!("{{reason=\"{}\"}}", r.as_str()), g(c)))
        .collect();
    metric(
        "enrp_pe_removals_total",
        "counter",
        "Pool elements removed, by reason.",
        &removals,
    );
    metric(
        "enrp_protocol_errors_total",
        "counter",
        "Malformed or unrecognised messages.",
        &[(String::new(), g(&s.protocol_errors))],
    );
    metric(
        "enrp_rate_limited_total",
        "counter",
        "Requests refused by per-peer rate limits.",
        &[(String::new(), g(&s.rate_limited))],
    );
    metric(
        "enrp_pools",
        "gauge",
        "Pools in the handlespace.",
        &[(String::new(), g(&s.pools))],
    );
    metric(
        "enrp_pool_elements",
        "gauge",
        "Pool elements in the handlespace.",
        &[(String::new(), g(&s.pes))],
    );
    metric(
        "enrp_associations",
        "gauge",
        "Open ASAP/ENRP associations.",
        &[(String::new(), g(&s.associations))],
    );
    o
}

/// Serves `/metrics` forever.
pub async fn serve(listener: TcpListener, stats: Arc<Stats>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            // Read the request line (and whatever else fits); the path is not checked
            // beyond being a GET.
            let n =
                match tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
            let (status, body) = if buf[..n].starts_with(b"GET ") {
                ("200 OK", render(&stats))
            } else {
                ("405 Method Not Allowed", String::new())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
