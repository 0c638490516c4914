//! Application-level health checks (issue 19 item 3): what an [`Action::Probe`] runs.
//!
//! The proxy runs the checks, not the daemon: the proxy is where a failure matters (it is
//! the path the sessions take), a check from the proxy also covers the network between
//! proxy and server, and one implementation serves every host (like haproxy's checks and
//! its external `command` check, which also runs on the load balancer). The daemon stays
//! the process-level channel of seed 002's two-channel rule.
//!
//! - `tcp`: connect; if `send` is set, write it; if `expect` is set, read until the text
//!   has arrived (at most [`MAX_READ`] bytes). A frozen process whose listen backlog still
//!   completes connects never sends its banner or answer, so it fails.
//! - `http`: `GET path HTTP/1.0`; the status code of the reply's status line must equal
//!   `expect_status` (default 200).
//! - `command`: the program runs with the server in its environment; exit status 0 passes.
//!   It is killed when the timeout passes.
//!
//! Every check runs under the check's `timeout_ms`; a timeout is a failure.
//!
//! [`Action::Probe`]: crate::core::Action::Probe

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{Check, CheckKind};

/// Most bytes a `tcp` or `http` check reads before it gives up on finding its answer.
pub const MAX_READ: usize = 16 * 1024;

/// Runs `check` against the server `addr` (`app`/`server` name it for a command check).
/// True when it passes within its timeout.
pub async fn run(check: &Check, addr: SocketAddr, app: &str, server: &str) -> bool {
    let t = Duration::from_millis(check.timeout_ms);
    match check.kind {
        CheckKind::Tcp => tokio::time::timeout(t, tcp(check, addr))
            .await
            .unwrap_or(false),
        CheckKind::Http => tokio::time::timeout(t, http(check, addr))
            .await
            .unwrap_or(false),
        CheckKind::Command => command(check, addr, app, server, t).await,
    }
}

async fn tcp(check: &Check, addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    if let Some(send) = &check.send {
        if s.write_all(send.as_bytes()).await.is_err() {
            return false;
        }
    }
    let Some(expect) = &check.expect else {
        return true;
    };
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < MAX_READ {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if contains(&got, expect.as_bytes()) {
            return true;
        }
    }
    false
}

async fn http(check: &Check, addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    let path = check.path.as_deref().unwrap_or("/");
    let host = check.host.clone().unwrap_or_else(|| addr.to_string());
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: proxy-pe-check\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.contains(&b'\n') && got.len() < MAX_READ {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    status_code(&got) == Some(check.expect_status.unwrap_or(200))
}

/// The status code of an HTTP/1.x status line (`HTTP/1.1 200 OK`).
pub fn status_code(reply: &[u8]) -> Option<u16> {
    let line = reply.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

async fn command(check: &Check, addr: SocketAddr, app: &str, server: &str, t: Duration) -> bool {
    let Some((prog, args)) = check.command.split_first() else {
        return false;
    };
    let child = tokio::process::Command::new(prog)
        .args(args)
        .env("PROXY_PE_CHECK_ADDR", addr.ip().to_string())
        .env("PROXY_PE_CHECK_PORT", addr.port().to_string())
        .env("PROXY_PE_CHECK_APP", app)
        .env("PROXY_PE_CHECK_SERVER", server)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(app, server, program = %prog, error = %e, "check command cannot run");
            return false;
        }
    };
    match tokio::time::timeout(t, child.wait()).await {
        Ok(Ok(st)) => st.success(),
        Ok(Err(_)) => false,
        Err(_) => {
            let _ = child.kill().await;
            false
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn check(kind: CheckKind) -> Check {
        Check::plain(kind, 100, 300)
    }

    /// A server that answers each connection with `reply` after reading a little.
    async fn server(reply: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let _ = s.write_all(reply).await;
                    let mut b = [0u8; 512];
                    let _ = s.read(&mut b).await;
                });
            }
        });
        a
    }

    #[tokio::test]
    async fn tcp_banner_must_arrive_and_a_frozen_listener_fails() {
        let a = server(b"+READY legacy\r\n").await;
        let mut c = check(CheckKind::Tcp);
        assert!(run(&c, a, "A", "S").await, "plain connect");
        c.expect = Some("+READY".into());
        assert!(run(&c, a, "A", "S").await, "banner");
        c.expect = Some("+GONE".into());
        assert!(!run(&c, a, "A", "S").await, "wrong banner");
        // Listening but never accepting (a frozen process): the connect completes through
        // the backlog, the banner never comes.
        let frozen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fa = frozen.local_addr().unwrap();
        c.expect = Some("+READY".into());
        let t0 = std::time::Instant::now();
        assert!(!run(&c, fa, "A", "S").await, "frozen");
        assert!(
            t0.elapsed() < Duration::from_millis(1_000),
            "timeout honoured"
        );
        c.expect = None;
        assert!(run(&c, fa, "A", "S").await, "a plain connect cannot see it");
    }

    #[tokio::test]
    async fn http_status_must_match() {
        let ok = server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let bad = server(b"HTTP/1.0 503 Service Unavailable\r\n\r\n").await;
        let mut c = check(CheckKind::Http);
        assert!(run(&c, ok, "A", "S").await);
        assert!(!run(&c, bad, "A", "S").await);
        c.expect_status = Some(503);
        assert!(run(&c, bad, "A", "S").await);
        assert_eq!(status_code(b"HTTP/1.1 404 Not Found\r\n"), Some(404));
        assert_eq!(status_code(b"SSH-2.0-x\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 2000 x\r\n"), None);
    }

    #[tokio::test]
    async fn command_exit_status_environment_and_timeout() {
        let a: SocketAddr = "127.0.0.1:4711".parse().unwrap();
        let mut c = check(CheckKind::Command);
        c.command = vec![
            "/bin/sh".into(),
            "-c".into(),
            "test \"$PROXY_PE_CHECK_PORT/$PROXY_PE_CHECK_SERVER\" = 4711/S".into(),
        ];
        assert!(run(&c, a, "A", "S").await);
        assert!(!run(&c, a, "A", "T").await);
        c.command = vec!["/bin/sleep".into(), "5".into()];
        let t0 = std::time::Instant::now();
        assert!(!run(&c, a, "A", "S").await);
        assert!(t0.elapsed() < Duration::from_secs(2));
        c.command = vec!["/nonexistent/check".into()];
        assert!(!run(&c, a, "A", "S").await);
    }
}
