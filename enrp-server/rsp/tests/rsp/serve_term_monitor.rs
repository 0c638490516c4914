//! `rsp serve`, `rsp term` and `rsp monitor` as an operator runs them, over TCP on loopback
//! with the test registrar of `rserpool-tests`:
//!
//! * `rsp term` → `rsp serve --echo`: the lines come back byte for byte;
//! * `--discard`: nothing comes back, and the PE's CSP reports count the messages;
//! * `--daytime`: rsplib's time format, once at session start and once per message;
//! * SIGTERM: the PE deregisters and sends a final CSP report;
//! * a registrar with CSP reporting (`enrp_server::csp`, what `--csp` runs) reports to
//!   `rsp monitor --json`, whose decoded fields are checked.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use asap::wire::csp::{ComponentGroup, CspReport};
use enrp_server::core::CoreConfig;
use enrp_server::driver::Server;
use rserpool_tests::registrar::{self, Running, POOL};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rsp");

async fn registrar() -> Running {
    registrar::local(0x7E57_0C59, |_| {}).await
}

/// Kills the child when dropped (a failing assertion must not leave processes behind).
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(service: &str, asap: SocketAddr, id: u32, csp: SocketAddr) -> Proc {
    Proc(
        Command::new(BIN)
            .args([
                "serve",
                POOL,
                service,
                "--transport",
                "tcp",
                "--listen",
                "127.0.0.1:0",
            ])
            .args([
                "--registrar",
                &asap.to_string(),
                "--id",
                &format!("{id:#x}"),
            ])
            .args(["--csp", &csp.to_string(), "--csp-interval", "250"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsp serve starts"),
    )
}

/// Waits until `id` is (or is no longer, `present = false`) in the registrar's pool.
async fn wait_pe(asap: SocketAddr, id: u32, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while registrar::resolve_all(asap).await.contains(&id) != present {
        assert!(
            Instant::now() < deadline,
            "PE {id:#x} present={present} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `rsp term` with `input` on stdin; returns its stdout (exit status checked).
fn term(asap: SocketAddr, input: &str) -> Vec<u8> {
    let mut child = Command::new(BIN)
        .args(["term", POOL, "--transport", "tcp", "--linger", "700"])
        .args(["--registrar", &asap.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rsp term starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("rsp term ends");
    assert!(
        out.status.success(),
        "rsp term failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Receives CSP reports on `sock` until `pred` holds for one (10 s at most).
async fn csp_until(sock: &tokio::net::UdpSocket, pred: impl Fn(&CspReport) -> bool) -> CspReport {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (n, _) = tokio::time::timeout(left, sock.recv_from(&mut buf))
            .await
            .expect("the expected CSP report within 10 s")
            .expect("recv");
        let r = CspReport::decode(&buf[..n]).expect("our report decodes");
        if pred(&r) {
            return r;
        }
    }
}

/// Checks one line of rsplib's daytime format: `Weekday, DD-Month-YYYY HH:MM:SS.uuuuuu`.
fn assert_daytime(line: &str) {
    let (day, rest) = line.split_once(", ").expect("weekday, ");
    assert!(
        [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday"
        ]
        .contains(&day),
        "{line}"
    );
    let (date, time) = rest.split_once(' ').expect("date time");
    let d: Vec<&str> = date.split('-').collect();
    assert_eq!(d.len(), 3, "{line}");
    assert_eq!(d[0].len(), 2, "{line}");
    assert!(
        d[0].parse::<u32>().is_ok_and(|x| (1..=31).contains(&x)),
        "{line}"
    );
    assert!(
        d[1].len() >= 3 && d[1].chars().next().is_some_and(char::is_uppercase),
        "{line}"
    );
    assert!(d[2].parse::<u32>().is_ok_and(|y| y >= 2024), "{line}");
    let (hms, micros) = time.split_once('.').expect(".micros");
    assert_eq!(hms.len(), 8, "{line}");
    assert_eq!(hms.split(':').count(), 3, "{line}");
    assert_eq!(micros.len(), 6, "{line}");
    assert!(micros.parse::<u32>().is_ok(), "{line}");
}

/// A UDP socket on loopback standing in for the CSP monitor, and its address.
async fn csp_monitor() -> (tokio::net::UdpSocket, SocketAddr) {
    let csp = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    let addr = csp.local_addr().expect("addr");
    (csp, addr)
}

/// [`term`] with `input` at the registrar `asap`, off the runtime's threads.
async fn term_on(asap: SocketAddr, input: &'static str) -> Vec<u8> {
    tokio::task::spawn_blocking(move || term(asap, input))
        .await
        .expect("term")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_to_serve_echo_daytime_discard_and_csp_reports() {
    let pr = registrar().await;
    let (csp, csp_addr) = csp_monitor().await;

    // Echo: every line back, byte for byte.
    let id = 0x5E5E_0001;
    let mut pe = serve("--echo", pr.asap, id, csp_addr);
    wait_pe(pr.asap, id, true).await;
    let asap = pr.asap;
    let out = term_on(asap, "hello pool\nsecond line\n").await;
    assert_eq!(String::from_utf8_lossy(&out), "hello pool\nsecond line\n");
    let r = csp_until(&csp, |r| r.status == "echo: 0 sessions, 2 messages").await;
    assert_eq!(r.sender.group(), ComponentGroup::PoolElement);
    assert_eq!(r.sender.object(), u64::from(id));
    assert_eq!(r.report_interval_us, 250_000);
    assert!(
        r.location.ends_with(&format!(": {POOL} echo")),
        "{}",
        r.location
    );

    // SIGTERM: deregistration and a final CSP report.
    let kill = Command::new("kill")
        .args(["-TERM", &pe.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    wait_pe(pr.asap, id, false).await;
    let fin = csp_until(&csp, |r| r.is_final()).await;
    assert_eq!(fin.sender.object(), u64::from(id));
    let status = pe.0.wait().expect("exit");
    assert!(status.success(), "clean exit on SIGTERM: {status}");

    // Daytime: one line when the session opens, one per message.
    let id = 0x5E5E_0002;
    let _pe = serve("--daytime", pr.asap, id, csp_addr);
    wait_pe(pr.asap, id, true).await;
    let out = term_on(asap, "what time is it?\n").await;
    let text = String::from_utf8(out).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text:?}");
    assert!(text.ends_with('\n'));
    for l in lines {
        assert_daytime(l);
    }

    pr.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_answers_nothing_and_counts() {
    let pr = registrar().await;
    let (csp, csp_addr) = csp_monitor().await;
    let id = 0x5E5E_0003;
    let _pe = serve("--discard", pr.asap, id, csp_addr);
    wait_pe(pr.asap, id, true).await;
    let asap = pr.asap;
    let out = term_on(asap, "a\nb\nc\n").await;
    assert!(out.is_empty(), "discard answered {out:?}");
    let r = csp_until(&csp, |r| r.status == "discard: 0 sessions, 3 messages").await;
    assert_eq!(r.sender.object(), u64::from(id));
    pr.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrar_csp_reports_decoded_by_rsp_monitor() {
    // A registrar with CSP reporting exactly as `enrp-server --csp` starts it.
    let mut core = CoreConfig::new(0x00C5_0001);
    core.asap_announce_targets = Vec::new();
    let any: SocketAddr = "127.0.0.1:0".parse().expect("lit");
    let server = Server::bind(core, registrar::tcp_driver(any, any, 100))
        .await
        .expect("bind");
    let asap = server.asap_addrs()[0];
    let stats = server.stats();

    // A free UDP port for the monitor.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("udp")
        .local_addr()
        .expect("addr")
        .port();
    let mut mon = Proc(
        Command::new(BIN)
            .args([
                "monitor",
                "--json",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rsp monitor starts"),
    );
    // Wait for the monitor to bind (it says so on stderr).
    let mut err = BufReader::new(mon.0.stderr.take().expect("stderr"));
    let mut first = String::new();
    err.read_line(&mut first).expect("stderr line");
    assert!(first.contains("listening on UDP"), "{first}");

    let reporter = enrp_server::csp::reporter(0x00C5_0001, &[asap], Duration::from_millis(250));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (srv_stop, srv_stopped) = tokio::sync::oneshot::channel::<()>();
    let csp_task = tokio::spawn(enrp_server::csp::run(
        format!("127.0.0.1:{port}").parse().expect("addr"),
        reporter,
        stats.clone(),
        async {
            let _ = stop_rx.await;
        },
    ));
    let srv = tokio::spawn(server.run(async {
        let _ = srv_stopped.await;
    }));
    let mut a = registrar::connect(asap, asap::wire::Protocol::Asap).await;
    registrar::register_pes(&mut a, [127, 0, 0, 1].into(), [0x11, 0x22]).await;
    assert_eq!(stats.pes.load(Ordering::Relaxed), 2);

    // Read the monitor's JSON lines until the registrar reports both PEs.
    let out = mon.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen_new = false;
    let report = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("monitor output within 10 s");
        let v: Value = serde_json::from_str(&line).expect("JSON line");
        seen_new |= v["event"] == "new";
        if v["report"]["status"] == "2 PEs in 1 Pools, 1 Assocs" {
            break v;
        }
    };
    assert!(seen_new, "the registrar first appeared as new");
    assert_eq!(report["group"], "registrar");
    assert_eq!(report["object"], "c50001");
    assert_eq!(report["report"]["sender"], "0100000000c50001");
    assert_eq!(report["report"]["report_interval_us"], 250_000);
    assert_eq!(report["report"]["workload"], 0xFFFF);
    assert_eq!(report["workload_fraction"], Value::Null);
    let location = report["report"]["location"].as_str().expect("location");
    assert!(location.ends_with(&format!(": {asap}")), "{location}");

    // Stopping the reporter sends the final report: the monitor drops the registrar.
    stop_tx.send(()).expect("stop");
    csp_task.await.expect("join").expect("reporter ok");
    let gone = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("final report within 10 s");
        let v: Value = serde_json::from_str(&line).expect("JSON line");
        if v["event"] == "gone" {
            break v;
        }
    };
    assert_eq!(gone["object"], "c50001");
    assert_eq!(gone["report"]["flags"], 1);
    let _ = srv_stop.send(());
    let _ = srv.await;
}
