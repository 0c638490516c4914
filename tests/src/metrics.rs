//! Scraping a `--metrics` endpoint (enrp-server, proxy-pe, legacy-daemon; OpenMetrics text
//! over HTTP/1.1, one page per connection) and reading sample values out of the page.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// `GET /metrics` at `addr`: the body, or an error text (connection refused, bad status).
pub fn try_scrape(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header end in {resp:?}"))?;
    if !head.starts_with("HTTP/1.1 200") || !head.contains("application/openmetrics-text") {
        return Err(format!("unexpected answer head: {head}"));
    }
    Ok(body.to_string())
}

/// Scrapes until the endpoint answers (the process may still be starting); panics after
/// 30 s.
pub fn scrape(addr: SocketAddr) -> String {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        match try_scrape(addr) {
            Ok(b) => return b,
            Err(e) if Instant::now() > end => panic!("metrics endpoint {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// [`scrape`] from async code (on the blocking pool, so the runtime keeps serving the
/// process under test when it runs in the same runtime).
pub async fn scrape_async(addr: SocketAddr) -> String {
    tokio::task::spawn_blocking(move || scrape(addr))
        .await
        .expect("scrape task")
}

/// The value of the sample whose name-and-labels part is exactly `series`
/// (e.g. `proxy_pe_sessions` or `x_total{a="b"}`), if the page has it.
pub fn value(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == series).then(|| v.parse().ok())?
    })
}

/// Asserts that the page has the sample `series` (as in [`value`]) with the value `want`;
/// the failure message shows the page.
#[track_caller]
pub fn assert_value(page: &str, series: &str, want: f64) {
    assert_eq!(
        value(page, series),
        Some(want),
        "{series} on the page:\n{page}"
    );
}

/// Metric family names declared on the page (`# TYPE name kind`), with their kinds.
pub fn families(page: &str) -> Vec<(String, String)> {
    page.lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("# TYPE ")?.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

/// Every sample name on the page (with the `_total`, `_bucket`, ... suffixes), without
/// labels.
pub fn sample_names(page: &str) -> Vec<String> {
    let mut v: Vec<String> = page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let end = l.find(['{', ' '])?;
            Some(l[..end].to_string())
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Asserts that `page` holds every one of `samples` (whole lines, e.g.
/// `"x_total{a=\"b\"} 2\n"`, or a `# TYPE` line with its sample), naming the first missing one.
#[track_caller]
pub fn assert_samples(page: &str, samples: &[&str]) {
    for sample in samples {
        assert!(page.contains(sample), "missing {sample:?} in\n{page}");
    }
}

/// A free loopback address for a metrics endpoint (bound, then released).
pub use crate::net::free_addr;

/// Starts `program args --metrics ADDR` with ADDR held by another socket and returns the
/// address and the process's stderr, after checking that it exits with status 1 (the
/// start-up error of each daemon's `--metrics` option names the address and the fix).
pub fn address_in_use(program: &str, args: &[&str]) -> (SocketAddr, String) {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr");
    let out = std::process::Command::new(program)
        .args(args)
        .args(["--metrics", &addr.to_string()])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    (addr, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_and_names() {
        let page = "# TYPE a counter\na_total{x=\"1\"} 3\n# TYPE b gauge\nb 2.5\n# EOF\n";
        assert_eq!(value(page, "a_total{x=\"1\"}"), Some(3.0));
        assert_eq!(value(page, "b"), Some(2.5));
        assert_eq!(value(page, "a_total"), None);
        assert_eq!(sample_names(page), vec!["a_total", "b"]);
        assert_eq!(
            families(page),
            vec![("a".into(), "counter".into()), ("b".into(), "gauge".into())]
        );
    }
}
