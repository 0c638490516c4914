//! The `--metrics ADDR:PORT` endpoint shared by `enrp-server`, `proxy-pe` and
//! `legacy-daemon` (issue 16 item 3): a minimal HTTP/1.1 server for one page of OpenMetrics
//! text. Each connection gets one answer and is closed; only `GET` is answered (any path),
//! anything else gets 405; the request must arrive within 5 s. The page is read-only and
//! unauthenticated (SECURITY.md "Metrics endpoints"): bind it to loopback or a management
//! network.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The OpenMetrics text format's media type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a client may take to send its request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the page forever: for each `GET`, `page()` renders it (`None`: 503, e.g. the
/// daemon's event loop did not answer).
pub async fn serve<F, Fut>(listener: TcpListener, page: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Option<String>> + Send,
{
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let page = page.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(REQUEST_TIMEOUT, sock.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let (status, body) = if buf[..n].starts_with(b"GET ") {
                match page().await {
                    Some(body) => ("200 OK", body),
                    None => ("503 Service Unavailable", String::new()),
                }
            } else {
                ("405 Method Not Allowed", String::new())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ask(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn get_gets_the_page_others_get_405_and_no_page_is_503() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve(l, || async {
            Some("a_total 1\n# EOF\n".to_string())
        }));
        let r = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")),
            "{r}"
        );
        assert!(r.contains("Content-Length: 16\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\na_total 1\n# EOF\n"), "{r}");
        let r = ask(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve(l, || async { None }));
        let r = ask(addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
    }
}
