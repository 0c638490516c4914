//! Issue 19 item 7 at the level of real processes (enrp-server, two proxy-pe in mode A,
//! three legacy-daemon and legacy-echo, TCP on loopback): an active/standby pair
//! (`[ha]`) keeps every legacy server resolvable while the active proxy hangs (SIGSTOP) and
//! after it resumes exactly one proxy owns the PEs; a planned `restart` hands the PEs over
//! without a gap; `stop` deregisters; `reload` applies a changed file without dropping an
//! open session.
//!
//! A sampler resolves the pool every 50 ms during each change and the tests assert that
//! every sample contains all three legacy servers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use proxy_pe::control::{lifecycle, Lifecycle};
use proxy_pe::ha::Role;

/// Replaces the rig's registrar (keep-alive 500/500 ms) by one at the same address that
/// lists every PE in a resolution, with keep-alive interval and timeout 1000 ms: a hung proxy's PEs are dropped 1–2 s after
/// it stopped, later than the standby's take-over (`dead_after_ms` 400 here), as with the
/// registrar defaults (5 s + 5 s) and the `[ha]` defaults (1 s).
fn slower_registrar(rig: &mut Rig) {
    // Every PE in each resolution (default 3: with both proxies' PEs in the pool during a
    // take-over a resolution would be a selection of three of six).
    let extra = ["--enrp=off", "--max-hres-items=16"];
    rig.replace_registrar(1000, &extra, "enrp-server-2.log");
}

/// Two mode A proxies `p0` (priority 200) and `p1` (priority 100) as a pair, each the
/// other's `[ha] peer`, then the daemons (reporting to both).
fn start_pair(rig: &mut Rig) {
    for _ in 0..2 {
        rig.reserve_proxy_ports();
        rig.proxies.push(None);
    }
    for k in 0..2 {
        let text = format!(
            "proxy_id = \"p{k}\"\n{}\n[ha]\npeer = \"{}\"\npriority = {}\npoll_ms = 100\ndead_after_ms = 400\n",
            rig.proxy_config(k, "registration", "round-robin", &[]),
            rig.controls[1 - k],
            if k == 0 { 200 } else { 100 }
        );
        let path = rig.dir.join(format!("proxy-{k}.toml"));
        std::fs::write(&path, text).expect("write");
        rig.config_paths.push(path);
        rig.start_proxy(k);
    }
    rig.start_daemons();
}

/// A rig with the [`slower_registrar`] and a [`start_pair`] pair, settled: both start as
/// standby, the higher priority (p0) becomes active with all PEs accepted, p1 stays
/// standby. Also the legacy servers' addresses.
async fn settled_pair(tag: &str) -> (Rig, Vec<SocketAddr>) {
    let mut rig = Rig::new(tag);
    slower_registrar(&mut rig);
    start_pair(&mut rig);
    rig.until(0, "p0 active with 3 PEs accepted", owns_all)
        .await;
    rig.until(1, "p1 standby", standby_with_nothing).await;
    let servers = rig.echo_addrs.clone();
    (rig, servers)
}

fn role(r: &proxy_pe::control::Report) -> Option<Role> {
    r.ha.as_ref().map(|h| h.role)
}

/// Active with all three PEs accepted by the registrar.
fn owns_all(r: &proxy_pe::control::Report) -> bool {
    r.ha.as_ref()
        .is_some_and(|h| h.role == Role::Active && h.wanted == 3 && h.accepted == 3)
}

fn standby_with_nothing(r: &proxy_pe::control::Report) -> bool {
    r.ha.as_ref()
        .is_some_and(|h| h.role == Role::Standby && h.wanted == 0)
        && r.registrar.pes.is_empty()
}

/// Resolutions with the time each was started.
type Samples = Arc<Mutex<Vec<(Instant, Vec<SocketAddr>)>>>;

/// Resolves the pool every 50 ms until stopped; each sample with its time.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    samples: Samples,
}

impl Sampler {
    fn start(registrar: SocketAddr) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples: Samples = Arc::default();
        let task = {
            let (stop, samples) = (stop.clone(), samples.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let v = resolve(registrar, "EchoPool").await;
                    samples.lock().expect("samples").push((t, v));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        Sampler {
            stop,
            task,
            samples,
        }
    }

    /// Stops; asserts that every sample resolved every one of `servers`; returns the number
    /// of samples.
    async fn finish(self, servers: &[SocketAddr], what: &str) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("sampler");
        let samples = self.samples.lock().expect("samples").clone();
        let t0 = samples.first().map(|s| s.0);
        let missing: Vec<String> = samples
            .iter()
            .filter(|(_, v)| servers.iter().any(|s| !v.contains(s)))
            .map(|(t, v)| {
                format!(
                    "+{} ms: {v:?}",
                    t0.map_or(0, |t0| t.duration_since(t0).as_millis())
                )
            })
            .collect();
        assert!(
            missing.is_empty(),
            "{what}: a legacy server was not resolvable in {} of {} samples: {missing:#?}",
            missing.len(),
            samples.len()
        );
        assert!(samples.len() >= 5, "{what}: too few samples");
        samples.len()
    }
}

/// Each legacy server resolvable exactly once (one owner per PE).
fn once_each(v: &[SocketAddr], servers: &[SocketAddr]) -> bool {
    let mut count: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    for a in v {
        *count.entry(*a).or_default() += 1;
    }
    v.len() == servers.len() && servers.iter().all(|s| count.get(s) == Some(&1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_a_hung_active_and_one_owner_remains_after_it_resumes() {
    let (rig, servers) = settled_pair("pair-hung").await;
    let v = resolve_until(rig.registrar_addr, "EchoPool", |v| once_each(v, &servers)).await;
    assert_eq!(v.len(), 3);

    let sampler = Sampler::start(rig.registrar_addr);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p0 = rig.proxies[0].as_ref().expect("p0").pid();
    // SAFETY: kill(2) on a child this test spawned.
    assert_eq!(unsafe { libc::kill(p0 as i32, libc::SIGSTOP) }, 0);
    let t0 = Instant::now();
    rig.until(1, "p1 took over", owns_all).await;
    let took = t0.elapsed();
    // The hung proxy's PEs are dropped by the registrar (unanswered keep-alives); the
    // servers stay in the pool through p1's.
    resolve_until(rig.registrar_addr, "EchoPool", |v| once_each(v, &servers)).await;
    let dropped = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // p0 resumes: both active; p1 (lower priority) yields once p0 has everything again.
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(p0 as i32, libc::SIGCONT) }, 0);
    let t1 = Instant::now();
    rig.until(1, "p1 back to standby", standby_with_nothing)
        .await;
    let settled = t1.elapsed();
    let r0 = rig.until(0, "p0 owns all", owns_all).await;
    let n = sampler.finish(&servers, "hung active").await;
    // Exactly one owner: each server once, with p0's PE identifiers.
    let v = resolve_until(rig.registrar_addr, "EchoPool", |v| once_each(v, &servers)).await;
    assert_eq!(v.len(), 3);
    let ids: Vec<u32> = r0.registrar.pes.iter().map(|p| p.pe_id).collect();
    for name in NAMES {
        assert!(ids.contains(&proxy_pe::core::legacy_pe_id(Some("p0"), "echo", name)));
    }
    let r1 = rig.report(1).await.expect("p1");
    assert_eq!(role(&r1), Some(Role::Standby));
    assert_eq!(
        r1.ha.as_ref().map(|h| h.changes),
        Some(2),
        "standby → active → standby"
    );
    println!(
        "pair: standby active with all PEs accepted {} ms after SIGSTOP of the active; hung proxy's PEs gone after {} ms; one owner again {} ms after SIGCONT; {n} resolutions, every one with all three servers",
        took.as_millis(),
        dropped.as_millis(),
        settled.as_millis()
    );
    assert!(took < Duration::from_secs(5), "take-over took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_restart_hands_the_pes_over_without_a_gap() {
    let (mut rig, servers) = settled_pair("pair-restart").await;
    let sampler = Sampler::start(rig.registrar_addr);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sock = rig.dir.join("ctl-0/control.sock");
    let a = lifecycle(&sock, Lifecycle::Restart).await.expect("restart");
    assert!(a.ok, "{a:?}");
    assert!(a.message.contains("handing the PEs over"), "{}", a.message);
    rig.until(1, "p1 took over", owns_all).await;
    // p0 exits once p1 has everything: its control port stops answering.
    let deadline = Instant::now() + Duration::from_secs(15);
    while rig.report(0).await.is_some() {
        assert!(Instant::now() < deadline, "p0 did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The service manager starts p0 again: it finds p1 active and stays standby.
    rig.kill_proxy(0);
    rig.start_proxy(0);
    rig.until(0, "p0 back as standby", |r| {
        standby_with_nothing(r) && r.ha.as_ref().is_some_and(|h| h.peer_alive)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let n = sampler.finish(&servers, "planned restart").await;
    let r1 = rig.until(1, "p1 still owns all", owns_all).await;
    assert_eq!(role(&r1), Some(Role::Active));
    let v = resolve_until(rig.registrar_addr, "EchoPool", |v| once_each(v, &servers)).await;
    assert_eq!(v.len(), 3);
    println!("pair restart: {n} resolutions, every one with all three servers");
}

/// A single mode A proxy: `stop` deregisters every PE at once and exits; `reload` over the
/// TCP port is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_deregisters_every_pe_and_exits() {
    let rig = Rig::with_proxy("lifecycle-stop", "registration", "round-robin", |_| {});
    let servers = rig.echo_addrs.clone();
    rig.until(0, "all registered", |r| {
        all_selectable(r)
            && r.registrar.pes.len() == 3
            && r.registrar
                .pes
                .iter()
                .all(|p| p.state == proxy_pe::registrar::PeRegState::Accepted)
    })
    .await;
    resolve_until(rig.registrar_addr, "EchoPool", |v| once_each(v, &servers)).await;
    let a = lifecycle(&rig.dir.join("ctl-0/control.sock"), Lifecycle::Stop)
        .await
        .expect("stop");
    assert!(a.ok, "{a:?}");
    assert_eq!(a.message, "stopping: deregistering 3 PEs");
    let t = Instant::now();
    resolve_until(rig.registrar_addr, "EchoPool", |v| v.is_empty()).await;
    println!("stop: pool empty after {} ms", t.elapsed().as_millis());
    let deadline = Instant::now() + Duration::from_secs(10);
    while rig.report(0).await.is_some() {
        assert!(Instant::now() < deadline, "the proxy did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(rig.dir.join("enrp-server.log")).unwrap_or_default();
    assert!(
        log.matches("deregistered").count() >= 3,
        "the registrar removed the PEs by deregistration, not by the association loss:\n{log}"
    );
}

/// `proxy-pe reload` (control socket) applies a changed file while a session is open: the
/// session keeps echoing on its server, new sessions follow the new file; an invalid file
/// is refused with the error and nothing changes; the TCP port refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_changed_file_without_dropping_a_session() {
    let mut rig = Rig::new("lifecycle-reload");
    // No file watch during the test: only the command reloads.
    let no_watch = |c: String| {
        c.replace(
            "probe_interval_ms = 200\n",
            "probe_interval_ms = 200\nconfig_watch_ms = 3600000\n",
        )
    };
    rig.add_proxy(|r| no_watch(r.proxy_config(0, "broker", "round-robin", &[])));
    rig.start_daemons();
    rig.until(0, "all selectable", all_selectable).await;
    let relay = rig.listens[0];
    let (mut s, who) = session(relay).await;
    assert_eq!(who, "IP1");
    assert_eq!(s.echo("before").await, "before");
    // The new file: IP1 in a maintenance window from now on, i.e. no new sessions (it
    // drains: the open one stays).
    let path = rig.config_paths[0].clone();
    let old = std::fs::read_to_string(&path).expect("read");
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let new = no_watch(rig.proxy_config(
        0,
        "broker",
        "round-robin",
        &[&format!(
            "maintenance = [\"{}-{}\"]",
            now_s - 10,
            now_s + 3600
        )],
    ));
    assert!(old.contains("config_watch_ms = 3600000"));
    assert_ne!(old, new);
    std::fs::write(&path, &new).expect("write");
    let sock = rig.dir.join("ctl-0/control.sock");
    let a = lifecycle(&sock, Lifecycle::Reload).await.expect("reload");
    assert!(a.ok, "{a:?}");
    assert!(
        a.message.starts_with("configuration reloaded"),
        "{}",
        a.message
    );
    let r = rig.report(0).await.expect("report");
    assert_eq!(r.config_loads, 2);
    assert_eq!(server(&r, "IP1").reason, "maintenance window");
    // The open session is still on IP1 and works.
    assert_eq!(s.echo("after reload").await, "after reload");
    for _ in 0..4 {
        let (t, who) = session(relay).await;
        assert_ne!(who, "IP1", "IP1 is in its window");
        t.close().await;
    }
    // An invalid file: refused with the error, the previous configuration stays.
    std::fs::write(
        &path,
        new.replace("policy = \"round-robin\"", "policy = \"fastest\""),
    )
    .expect("write");
    let a = lifecycle(&sock, Lifecycle::Reload).await.expect("reload");
    assert!(!a.ok);
    let e = a.error.unwrap_or_default();
    assert!(
        e.contains("fastest") && e.contains("previous one stays"),
        "{e}"
    );
    let r = rig.report(0).await.expect("report");
    assert_eq!(r.config_loads, 2);
    assert_eq!(s.echo("still here").await, "still here");
    // Not over the TCP control port.
    let mut c = tokio::net::TcpStream::connect(rig.controls[0])
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    c.write_all(b"reload\n").await.expect("write");
    c.shutdown().await.expect("shutdown");
    let mut out = String::new();
    c.read_to_string(&mut out).await.expect("read");
    assert!(out.contains("accepted only on the control socket"), "{out}");
    s.close().await;
}
