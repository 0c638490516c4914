//! Mode B relay benchmark: throughput and added round-trip latency through `proxy-pe`
//! versus a direct TCP connection to the same legacy echo server.
//!
//! ```text
//! cargo run --release -p proxy-pe --example relay_bench [-- MIB ROUNDTRIPS]
//! ```
//!
//! Everything runs on loopback in one process: an echo server, the proxy (its real
//! driver, `proxy_pe::proxy::run`, with no registrar) and a scripted daemon that reports
//! the echo application running. Throughput: one connection, MIB MiB written while the
//! echo is read back concurrently (bytes counted one way). Latency: ROUNDTRIPS sequential
//! 64-byte ping-pongs; median and 99th percentile.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use legacy_protocol::link::connect_daemon;
use legacy_protocol::{
    AppStatus, DaemonFrame, DaemonMessage, Heartbeat, Hello, Snapshot, PROTOCOL_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    a
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A daemon on the plaintext link (`[daemon_link] auth = "none"` in the bench's proxy
/// configuration) that reports the echo application running, then heartbeats.
async fn fake_daemon(proxy: SocketAddr) {
    let s = loop {
        match TcpStream::connect(proxy).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let mut link = connect_daemon(s, "bench", None)
        .await
        .expect("daemon handshake");
    let hello = DaemonMessage::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        daemon_id: "bench".into(),
        instance: 1,
        config_version: 1,
        poll_interval_ms: 1000,
        heartbeat_interval_ms: 1000,
        software: "bench".into(),
    });
    let snap = DaemonMessage::Snapshot(Snapshot {
        state_seq: 1,
        config_version: 1,
        taken_at_ms: 0,
        apps: vec![AppStatus::new("echo", &[1])],
    });
    let mut seq = 0;
    for msg in [hello, snap] {
        link.send(&DaemonFrame { seq, msg }).await.expect("send");
        seq += 1;
    }
    let mut hb = 1;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let msg = DaemonMessage::Heartbeat(Heartbeat {
            heartbeat_seq: hb,
            state_seq: 1,
            config_version: 1,
            uptime_s: 0,
        });
        if link.send(&DaemonFrame { seq, msg }).await.is_err() {
            return;
        }
        seq += 1;
        hb += 1;
    }
}

async fn throughput(addr: SocketAddr, mib: usize) -> f64 {
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let (mut r, mut w) = s.into_split();
    let total = mib * 1024 * 1024;
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let buf = vec![0x5au8; 64 * 1024];
        let mut left = total;
        while left > 0 {
            let n = left.min(buf.len());
            w.write_all(&buf[..n]).await.expect("write");
            left -= n;
        }
        w.shutdown().await.expect("shutdown");
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < total {
        let n = r.read(&mut buf).await.expect("read");
        assert!(n > 0, "early EOF after {got} bytes");
        got += n;
    }
    writer.await.expect("writer");
    let secs = start.elapsed().as_secs_f64();
    total as f64 / secs / (1024.0 * 1024.0)
}

async fn latency(addr: SocketAddr, rounds: usize) -> (f64, f64) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    let mut v = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        s.write_all(&msg).await.expect("write");
        s.read_exact(&mut back).await.expect("read");
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[(v.len() * 99) / 100])
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(512);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let echo = echo_server().await;
    let daemon_port = free_port();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let dir = std::env::temp_dir().join(format!("relay-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = dir.join("proxy.toml");
    std::fs::write(
        &cfg,
        format!(
            "daemon_listen = \"127.0.0.1:{daemon_port}\"\ncontrol_listen = \"127.0.0.1:{}\"\n\
             control_socket = \"ctl/control.sock\"\nadmin_state_file = \"admin-state.json\"\n\
             [daemon_link]\nauth = \"none\"\n\
             [[application]]\nname = \"echo\"\npool_handle = \"Echo\"\npolicy = \"round-robin\"\n\
             listen = \"{listen}\"\n[[application.server]]\naddress = \"{}\"\nport = {}\ndaemon = \"bench\"\n",
            free_port(),
            echo.ip(),
            echo.port()
        ),
    )
    .expect("config");
    tokio::spawn(proxy_pe::proxy::run(cfg));
    tokio::spawn(fake_daemon(
        format!("127.0.0.1:{daemon_port}").parse().expect("a"),
    ));
    // Wait until the proxy relays (the daemon's snapshot has been applied).
    loop {
        if let Ok(mut s) = TcpStream::connect(listen).await {
            if s.write_all(b"x").await.is_ok() {
                let mut b = [0u8; 1];
                if let Ok(Ok(1)) =
                    tokio::time::timeout(Duration::from_millis(500), s.read(&mut b)).await
                {
                    if b[0] == b'x' {
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Warm-up.
    let _ = throughput(echo, 16).await;
    let _ = throughput(listen, 16).await;
    let d_tp = throughput(echo, mib).await;
    let p_tp = throughput(listen, mib).await;
    let (d50, d99) = latency(echo, rounds).await;
    let (p50, p99) = latency(listen, rounds).await;
    println!("relay_bench: {mib} MiB, {rounds} round trips of 64 bytes, loopback");
    println!("throughput direct  {d_tp:8.1} MiB/s");
    println!(
        "throughput proxied {p_tp:8.1} MiB/s ({:.0} % of direct)",
        p_tp / d_tp * 100.0
    );
    println!("rtt direct  p50 {d50:7.1} us  p99 {d99:7.1} us");
    println!("rtt proxied p50 {p50:7.1} us  p99 {p99:7.1} us");
    println!(
        "added latency p50 {:7.1} us  p99 {:7.1} us",
        p50 - d50,
        p99 - d99
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::process::exit(0);
}
