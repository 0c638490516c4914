//! Deterministic tests of the core: time is a number, daemons are messages.

use super::*;
use crate::config::Config;
use legacy_protocol::{Delta, Heartbeat, PortStatus, Snapshot};

const T0: u64 = 1_700_000_000_000;

/// The application's `listen` key: mode B (`broker`) needs one.
fn listen_key(mode: &str) -> &'static str {
    if mode == "broker" {
        "listen = \"127.0.0.1:8000\"\n"
    } else {
        ""
    }
}

fn config(mode: &str, policy: &str, extra_server: &str) -> Config {
    config_app(mode, policy, extra_server, "")
}

/// [`config`] with application keys `app_extra` (e.g. `on_server_failure`).
fn config_app(mode: &str, policy: &str, extra_server: &str, app_extra: &str) -> Config {
    let listen = listen_key(mode);
    let text = format!(
        r#"
mode = "{mode}"
[daemon_link]
# The core never sees the handshake; identities here are already authenticated.
auth = "none"
max_heartbeat_ms = 10000
[detection]
heartbeat_miss_factor = 3
suspect_grace_ms = 10000
probe_interval_ms = 1000

[[application]]
name = "A"
pool_handle = "AppA"
policy = "{policy}"
{listen}
{app_extra}
[[application.server]]
name = "IP1"
address = "127.0.0.11"
port = 7000
daemon = "d1"
{extra_server}

[[application.server]]
name = "IP2"
address = "127.0.0.12"
port = 7000
daemon = "d2"

[[application.server]]
name = "IP3"
address = "127.0.0.13"
port = 7000
daemon = "d3"
"#
    );
    Config::parse(&text, "test").expect("valid test config")
}

fn hello(id: &str, instance: u64) -> Hello {
    Hello {
        protocol_version: 1,
        daemon_id: id.into(),
        instance,
        config_version: 1,
        poll_interval_ms: 1000,
        heartbeat_interval_ms: 1000,
        software: "t".into(),
    }
}

fn app(running: bool, pids: &[u32]) -> AppStatus {
    AppStatus {
        running,
        ..AppStatus::new("A", pids)
    }
}

fn snapshot(seq: u64, apps: Vec<AppStatus>) -> DaemonMessage {
    DaemonMessage::Snapshot(Snapshot {
        state_seq: seq,
        config_version: 1,
        taken_at_ms: 0,
        apps,
    })
}

fn delta(seq: u64, changed: Vec<AppStatus>) -> DaemonMessage {
    DaemonMessage::Delta(Delta {
        state_seq: seq,
        config_version: 1,
        taken_at_ms: 0,
        changed,
        removed: Vec::new(),
    })
}

fn heartbeat(seq: u64) -> DaemonMessage {
    DaemonMessage::Heartbeat(Heartbeat {
        heartbeat_seq: seq,
        state_seq: 1,
        config_version: 1,
        uptime_s: 0,
    })
}

/// A core with all three daemons connected and reporting `A` running.
fn all_up(mode: &str, policy: &str, extra: &str) -> Core {
    up(config(mode, policy, extra))
}

/// [`all_up`] with application keys.
fn all_up_app(mode: &str, policy: &str, extra: &str, app_extra: &str) -> Core {
    up(config_app(mode, policy, extra, app_extra))
}

/// [`all_up_app`] in mode B with round robin.
fn broker(extra: &str, app_extra: &str) -> Core {
    all_up_app("broker", "round-robin", extra, app_extra)
}

fn up(cfg: Config) -> Core {
    let mut c = Core::new(cfg);
    for (i, d) in ["d1", "d2", "d3"].iter().enumerate() {
        c.daemon_connected(T0, &hello(d, 1));
        c.daemon_message(T0, d, &snapshot(1, vec![app(true, &[100 + i as u32])]))
            .expect("snapshot");
    }
    c
}

/// Heartbeats from every daemon at `t`, then a tick; all actions.
fn beat(c: &mut Core, t: u64) -> Vec<Action> {
    let mut acts = Vec::new();
    for d in ["d1", "d2", "d3"] {
        acts.extend(c.daemon_message(t, d, &heartbeat(1)).expect("hb"));
    }
    acts.extend(c.tick(t));
    acts
}

fn servers(c: &mut Core, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| c.open_session(T0, "A").expect("available").server)
        .collect()
}

/// Heartbeats at a fifth, two, three and four fifths of `end` and 1 ms before it (after
/// `T0`) bring no action.
fn quiet_until(c: &mut Core, end: u64) {
    for t in [end / 5, 2 * end / 5, 3 * end / 5, 4 * end / 5, end - 1] {
        assert!(beat(c, T0 + t).is_empty(), "at +{t}");
    }
}

/// The core's order to close `session` for `reason`.
fn closed(session: SessionId, reason: &str) -> Vec<Action> {
    vec![Action::CloseSession {
        session,
        reason: reason.into(),
    }]
}

/// `acts` is exactly the deregistration of PE `pe_id` of `AppA`, whose keep-alives the
/// core no longer answers.
fn assert_deregistered(c: &Core, acts: &[Action], pe_id: u32) {
    assert_eq!(
        acts,
        [Action::Deregister {
            pool_handle: "AppA".into(),
            pe_id
        }]
    );
    assert!(!c.keep_alive_ok(pe_id));
}

fn state(c: &Core, now: u64, server: &str) -> ServerView {
    c.status(now).applications[0]
        .servers
        .iter()
        .find(|s| s.name == server)
        .expect("server")
        .clone()
}

#[test]
fn round_robin_in_seed_order_skipping_stopped_server() {
    let mut c = all_up("broker", "round-robin", "");
    assert_eq!(
        servers(&mut c, 6),
        ["IP1", "IP2", "IP3", "IP1", "IP2", "IP3"]
    );
    c.daemon_message(T0, "d2", &delta(2, vec![app(false, &[])]))
        .expect("delta");
    assert_eq!(servers(&mut c, 3), ["IP1", "IP3", "IP1"]);
}

#[test]
fn no_server_running_fails_the_session() {
    let mut c = Core::new(config("broker", "round-robin", ""));
    assert_eq!(
        c.open_session(T0, "A"),
        Err(SessionError::NotAvailable("A".into()))
    );
    assert_eq!(
        c.open_session(T0, "B"),
        Err(SessionError::UnknownApplication("B".into()))
    );
    assert_eq!(c.session_count(), 0);
}

#[test]
fn silent_daemon_is_suspect_then_down_only_when_probe_fails() {
    let mut c = all_up("broker", "round-robin", "");
    // Heartbeats keep d2, d3 fresh; d1 says nothing after T0.
    let t = T0 + 3_001;
    let mut acts = Vec::new();
    for d in ["d2", "d3"] {
        acts.extend(c.daemon_message(t, d, &heartbeat(1)).expect("hb"));
    }
    acts.extend(c.tick(t));
    assert!(acts.iter().any(
        |a| matches!(a, Action::Probe { app, server, addr, check, .. }
        if app == "A" && server == "IP1" && *addr == "127.0.0.11:7000".parse().expect("lit")
            && check.timeout_ms == 1_000 && check.kind == crate::config::CheckKind::Tcp)
    ));
    assert_eq!(state(&c, t, "IP1").health, Health::Suspect);
    // No application check: a TCP connect cannot vouch for a frozen process, so the
    // silent daemon alone takes IP1 out of selection (issue 19 item 4), not down.
    assert!(!state(&c, t, "IP1").selectable, "silent, unvouched: out");
    // The probe answers: still suspect, still out (the connect proves nothing).
    c.probe_result(t + 10, "A", "IP1", true);
    assert!(!state(&c, t + 10, "IP1").selectable);
    assert_eq!(state(&c, t + 10, "IP1").health, Health::Suspect);
    // No new probe before the interval.
    assert!(!c
        .tick(t + 500)
        .iter()
        .any(|a| matches!(a, Action::Probe { .. })));
    // The probe fails: down.
    c.probe_result(t + 1_000, "A", "IP1", false);
    let s = state(&c, t + 1_000, "IP1");
    assert_eq!(s.health, Health::Down);
    assert_eq!(s.reason, "daemon silent and service probe failed");
    assert!(!s.running);
}

/// A daemon that announces a heartbeat interval of one hour is judged with the proxy's
/// `daemon_link.max_heartbeat_ms` (10 s here): silent for 3 × 10 s it is suspect, not fresh
/// for three hours.
#[test]
fn announced_heartbeat_interval_is_bounded_by_the_proxy() {
    let mut c = Core::new(config("broker", "round-robin", ""));
    for (i, d) in ["d1", "d2", "d3"].iter().enumerate() {
        let mut h = hello(d, 1);
        if *d == "d1" {
            h.heartbeat_interval_ms = 3_600_000;
        }
        c.daemon_connected(T0, &h);
        c.daemon_message(T0, d, &snapshot(1, vec![app(true, &[100 + i as u32])]))
            .expect("snapshot");
    }
    let t = T0 + 30_001;
    for d in ["d2", "d3"] {
        c.daemon_message(t, d, &heartbeat(1)).expect("hb");
    }
    c.tick(t);
    assert_eq!(state(&c, t, "IP1").health, Health::Suspect);
    assert_eq!(state(&c, t, "IP2").health, Health::Running);
}

#[test]
fn suspect_grace_period_ends_in_down() {
    let mut c = all_up("broker", "round-robin", "");
    c.daemon_disconnected(T0 + 1, "d1");
    assert_eq!(state(&c, T0 + 1, "IP1").health, Health::Suspect);
    c.tick(T0 + 10_000);
    assert_eq!(state(&c, T0 + 10_000, "IP1").health, Health::Suspect);
    c.tick(T0 + 10_001);
    assert_eq!(state(&c, T0 + 10_001, "IP1").health, Health::Down);
    // The daemon comes back with a snapshot: running again.
    c.daemon_connected(T0 + 20_000, &hello("d1", 2));
    c.daemon_message(T0 + 20_000, "d1", &snapshot(7, vec![app(true, &[100])]))
        .expect("snapshot");
    assert_eq!(state(&c, T0 + 20_000, "IP1").health, Health::Running);
}

#[test]
fn relay_failure_skips_server_until_probe_succeeds() {
    let mut c = all_up("broker", "round-robin", "");
    let a = c.open_session(T0, "A").expect("ok");
    assert_eq!(a.server, "IP1");
    let acts = c.session_server_unreachable(T0, a.session);
    // One channel (the service) failed while the daemon reports running: out of
    // selection, not declared down, so no session is moved or closed by the core (the
    // relay that saw the failure reselects its own session).
    assert!(!acts
        .iter()
        .any(|x| matches!(x, Action::MoveSession { .. } | Action::CloseSession { .. })));
    assert!(acts
        .iter()
        .any(|x| matches!(x, Action::Probe { server, .. } if server == "IP1")));
    let b = c.reselect(T0, a.session).expect("another server");
    assert_eq!(b.server, "IP2");
    let s = state(&c, T0, "IP1");
    assert_eq!(s.health, Health::Suspect);
    assert_eq!(s.reason, "check failing; daemon reports running");
    assert_eq!(servers(&mut c, 2), ["IP3", "IP2"]);
    c.probe_result(T0 + 1, "A", "IP1", true);
    assert!(state(&c, T0 + 1, "IP1").selectable);
}

#[test]
fn lifetime_expiry_closes_sessions_by_default() {
    let mut c = all_up("broker", "round-robin", "lifetime_s = 10");
    let a = c.open_session(T0, "A").expect("ok");
    quiet_until(&mut c, 10_000);
    assert_eq!(
        beat(&mut c, T0 + 10_000),
        closed(a.session, "lifetime expired")
    );
    assert_eq!(
        a.policy.on_server_failure,
        crate::config::OnServerFailure::Close
    );
}

#[test]
fn lifetime_expiry_moves_sessions() {
    let mut c = broker("lifetime_s = 10", "on_server_failure = \"reconnect\"");
    let a = c.open_session(T0, "A").expect("ok");
    assert_eq!(a.server, "IP1");
    quiet_until(&mut c, 10_000);
    assert!(state(&c, T0 + 9_999, "IP1").selectable);
    let acts = beat(&mut c, T0 + 10_000);
    assert_eq!(
        acts,
        vec![Action::MoveSession {
            session: a.session,
            server: "IP1".into(),
            reason: "lifetime expired".into()
        }]
    );
    let b = c.reselect(T0 + 10_000, a.session).expect("ok");
    assert_eq!(b.server, "IP2");
    // A restart of the application (new pid) starts a new work cycle.
    c.daemon_message(T0 + 11_000, "d1", &delta(2, vec![app(true, &[555])]))
        .expect("delta");
    assert!(state(&c, T0 + 11_000, "IP1").selectable);
    assert_eq!(
        state(&c, T0 + 11_000, "IP1").lifetime_remaining_ms,
        Some(10_000)
    );
}

#[test]
fn maintenance_window_excludes_and_readmits() {
    // Window 1700000100..1700000200 s.
    let mut c = all_up(
        "broker",
        "round-robin",
        "maintenance = [\"1700000100-1700000200\"]",
    );
    let inside = 1_700_000_100_000;
    let a = c.open_session(T0, "A").expect("ok");
    assert_eq!(a.server, "IP1");
    // The window start drains IP1: its open session is not moved (issue 19 item 1), new
    // sessions skip it.
    let acts = beat(&mut c, inside);
    assert!(
        !acts.iter().any(|x| matches!(x, Action::MoveSession { .. })),
        "{acts:?}"
    );
    assert_eq!(c.session_server(a.session), Some("IP1"));
    let v = state(&c, inside, "IP1");
    assert!(!v.selectable);
    assert_eq!(v.reason, "maintenance window");
    assert_eq!(v.active_sessions, 1);
    assert_eq!(servers(&mut c, 3), ["IP2", "IP3", "IP2"]);
    c.close_session(inside, a.session);
    assert_eq!(state(&c, inside, "IP1").active_sessions, 0);
    let after = 1_700_000_200_000;
    for d in ["d1", "d2", "d3"] {
        c.daemon_message(after, d, &heartbeat(2)).expect("hb");
    }
    assert!(state(&c, after, "IP1").selectable);
}

#[test]
fn fifo_and_least_load_and_least_transactions() {
    let mut c = all_up("broker", "fifo", "");
    let s1 = c.open_session(T0, "A").expect("ok");
    let s2 = c.open_session(T0, "A").expect("ok");
    let _s3 = c.open_session(T0, "A").expect("ok");
    assert_eq!((s1.server.as_str(), s2.server.as_str()), ("IP1", "IP2"));
    c.close_session(T0, s2.session);
    // IP2 is the only idle server.
    assert_eq!(c.open_session(T0, "A").expect("ok").server, "IP2");

    let mut c = all_up("broker", "least-load", "");
    for (d, conns) in [("d1", 8), ("d2", 2), ("d3", 5)] {
        let mut a = app(true, &[1]);
        a.ports = vec![PortStatus {
            port: 7000,
            listening: Some(true),
            connections: Some(conns),
        }];
        a.load_hints.capacity = Some(10);
        c.daemon_message(T0, d, &delta(2, vec![a])).expect("delta");
    }
    assert_eq!(state(&c, T0, "IP1").load, 0.8);
    assert_eq!(servers(&mut c, 2), ["IP2", "IP2"]);

    let mut c = all_up("broker", "least-transactions", "");
    assert_eq!(servers(&mut c, 4), ["IP1", "IP2", "IP3", "IP1"]);
}

#[test]
fn fewest_applications() {
    let mut c = all_up("broker", "fewest-applications", "");
    let mut other = app(true, &[9]);
    other.name = "other".into();
    c.daemon_message(T0, "d1", &delta(2, vec![other.clone()]))
        .expect("delta");
    assert_eq!(state(&c, T0, "IP1").apps_running, 2);
    assert_eq!(servers(&mut c, 1), ["IP2"]);
}

#[test]
fn mode_a_registers_running_servers_and_deregisters_stopped() {
    let mut c = Core::new(config("registration", "least-load", ""));
    c.daemon_connected(T0, &hello("d1", 1));
    let acts = c
        .daemon_message(T0, "d1", &snapshot(1, vec![app(true, &[1])]))
        .expect("snap");
    let id1 = stable_pe_id(&["A", "IP1"]);
    assert_eq!(acts.len(), 1);
    match &acts[0] {
        Action::Register { pool_handle, pe } => {
            assert_eq!(pool_handle, "AppA");
            assert_eq!(pe.id, id1);
            assert_eq!(
                pe.user_transport,
                TransportParameter::Tcp {
                    port: 7000,
                    transport_use: TransportUse::DataOnly,
                    address: "127.0.0.11".parse().expect("lit")
                }
            );
            assert_eq!(pe.policy, Policy::LeastUsed { load: 0 });
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(c.keep_alive_ok(id1));
    // Same state again: nothing to send.
    assert!(c
        .daemon_message(T0, "d1", &heartbeat(1))
        .expect("hb")
        .is_empty());
    // Load moves by 50 %: re-registration with the new value.
    let mut busy = app(true, &[1]);
    busy.cpu_percent = 50.0;
    let acts = c
        .daemon_message(T0, "d1", &delta(2, vec![busy]))
        .expect("d");
    assert!(
        matches!(&acts[..], [Action::Register { pe, .. }] if pe.policy == Policy::LeastUsed { load: 0x8000_0000 })
    );
    // Application stops: deregistration, keep-alives no longer answered.
    let acts = c
        .daemon_message(T0, "d1", &delta(3, vec![app(false, &[])]))
        .expect("d");
    assert_deregistered(&c, &acts, id1);
}

#[test]
fn daemon_reconnect_keeps_registration() {
    let mut c = Core::new(config("registration", "round-robin", ""));
    c.daemon_connected(T0, &hello("d1", 1));
    c.daemon_message(T0, "d1", &snapshot(1, vec![app(true, &[1])]))
        .expect("snap");
    assert_eq!(c.registrations().len(), 1);
    // The daemon restarts: disconnect, new instance, snapshot. No deregistration on the way.
    let mut acts = c.daemon_disconnected(T0 + 100, "d1");
    acts.extend(c.daemon_connected(T0 + 200, &hello("d1", 2)));
    acts.extend(
        c.daemon_message(T0 + 200, "d1", &snapshot(1, vec![app(true, &[1])]))
            .expect("snap"),
    );
    assert!(
        !acts.iter().any(|a| matches!(a, Action::Deregister { .. })),
        "{acts:?}"
    );
    assert_eq!(c.registrations().len(), 1);
    let st = c.status(T0 + 200);
    assert_eq!(st.daemons[0].connections, 2);
    assert!(st
        .events
        .iter()
        .any(|e| e.kind == "daemon-connected" && e.detail == "restarted (instance 2)"));
}

#[test]
fn delta_gap_is_a_protocol_error() {
    let mut c = all_up("broker", "round-robin", "");
    let e = c
        .daemon_message(T0, "d1", &delta(5, vec![app(true, &[1])]))
        .expect_err("gap");
    assert!(matches!(e, CoreError::Protocol { .. }));
    assert_eq!(
        c.daemon_message(T0, "nobody", &heartbeat(1)),
        Err(CoreError::UnknownDaemon("nobody".into()))
    );
}

#[test]
fn broker_registers_itself_once_per_application() {
    let c = all_up("broker", "round-robin", "");
    let regs = c.registrations();
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].0, "AppA");
    assert_eq!(
        regs[0].1.user_transport,
        TransportParameter::Tcp {
            port: 8000,
            transport_use: TransportUse::DataOnly,
            address: "127.0.0.1".parse().expect("lit")
        }
    );
    assert!(c.keep_alive_ok(regs[0].1.id));
}

#[test]
fn broker_registers_sctp_session_endpoint() {
    let mut cfg = config("broker", "round-robin", "");
    cfg.applications[0].asap_listen = Some("10.0.0.30:8001".parse().expect("lit"));
    cfg.applications[0].asap_transport = asap::transport::TransportKind::Sctp;
    let mut c = Core::new(cfg);
    for (i, d) in ["d1", "d2", "d3"].iter().enumerate() {
        c.daemon_connected(T0, &hello(d, 1));
        c.daemon_message(T0, d, &snapshot(1, vec![app(true, &[100 + i as u32])]))
            .expect("snapshot");
    }
    let regs = c.registrations();
    assert_eq!(regs.len(), 1);
    assert_eq!(
        regs[0].1.user_transport,
        TransportParameter::Sctp {
            port: 8001,
            transport_use: TransportUse::DataPlusControl,
            addresses: vec!["10.0.0.30".parse().expect("lit")],
        }
    );
}

#[test]
fn reload_keeps_state_and_moves_sessions_of_removed_servers() {
    let mut c = broker("", "on_server_failure = \"reconnect\"");
    let a = c.open_session(T0, "A").expect("ok");
    let b = c.open_session(T0, "A").expect("ok");
    assert_eq!(b.server, "IP2");
    let mut cfg = c.config().clone();
    cfg.applications[0].servers.remove(0);
    let acts = c.apply_config(T0, cfg);
    assert_eq!(
        acts,
        vec![Action::MoveSession {
            session: a.session,
            server: "IP1".into(),
            reason: "server removed from configuration".into()
        }]
    );
    // IP2's state survives the reload; the server list changed, so round robin restarts
    // at the first configured server.
    assert_eq!(state(&c, T0, "IP2").active_sessions, 1);
    assert_eq!(c.open_session(T0, "A").expect("ok").server, "IP2");
}

#[test]
fn pooling_table_has_seed_shape() {
    let mut c = all_up("broker", "round-robin", "");
    c.daemon_message(T0, "d3", &delta(2, vec![app(false, &[])]))
        .expect("d");
    assert_eq!(
        c.status(T0).render_table(),
        "Application 'A'\nIP1 is running\nIP2 is running\nIP3 is not running\nRound-robin Priority\n\n"
    );
}

#[test]
fn pe_ids_are_stable_and_distinct() {
    assert_eq!(stable_pe_id(&["A", "IP1"]), stable_pe_id(&["A", "IP1"]));
    assert_ne!(stable_pe_id(&["A", "IP1"]), stable_pe_id(&["A", "IP2"]));
    assert_ne!(stable_pe_id(&["AI", "P1"]), stable_pe_id(&["A", "IP1"]));
}

#[test]
fn mode_a_lifetime_expiry_deregisters_and_restart_reregisters() {
    let mut c = all_up("registration", "round-robin", "lifetime_s = 10");
    let id1 = stable_pe_id(&["A", "IP1"]);
    assert_eq!(c.registrations().len(), 3);
    // Registered for the remaining work cycle, not the default registration life.
    let life = |c: &Core| {
        c.registrations()
            .iter()
            .find(|(_, p)| p.id == id1)
            .map(|(_, p)| p.registration_life)
    };
    assert_eq!(life(&c), Some(10_000));
    quiet_until(&mut c, 10_000);
    assert!(c.keep_alive_ok(id1));
    // The lifetime ends: exactly IP1 is deregistered, its keep-alives go unanswered.
    let acts = beat(&mut c, T0 + 10_000);
    assert_deregistered(&c, &acts, id1);
    assert_eq!(c.registrations().len(), 2);
    let st = state(&c, T0 + 10_000, "IP1");
    assert!(!st.registered && st.running);
    assert_eq!(st.reason, "lifetime expired");
    // A restart of the application (new pid) starts a new work cycle: registered again.
    let acts = c
        .daemon_message(T0 + 11_000, "d1", &delta(2, vec![app(true, &[555])]))
        .expect("delta");
    assert!(
        matches!(&acts[..], [Action::Register { pe, .. }] if pe.id == id1 && pe.registration_life == 10_000),
        "{acts:?}"
    );
    assert!(c.keep_alive_ok(id1));
}

#[test]
fn mode_a_maintenance_window_deregisters_and_readmits() {
    // Window 1700000100..1700000200 s on IP1.
    let mut c = all_up(
        "registration",
        "round-robin",
        "maintenance = [\"1700000100-1700000200\"]",
    );
    let id1 = stable_pe_id(&["A", "IP1"]);
    let start = 1_700_000_100_000;
    // Daemons report every 2 s; nothing changes until the window starts.
    for t in (T0 + 2_000..start).step_by(2_000) {
        assert!(beat(&mut c, t).is_empty(), "at {t}");
    }
    assert!(beat(&mut c, start - 1).is_empty());
    assert!(c.keep_alive_ok(id1));
    // The window starts: IP1 (only) is deregistered.
    let acts = beat(&mut c, start);
    assert_deregistered(&c, &acts, id1);
    assert_eq!(state(&c, start, "IP1").reason, "maintenance window");
    let end = 1_700_000_200_000;
    for t in (start + 2_000..end).step_by(2_000) {
        assert!(beat(&mut c, t).is_empty(), "at {t}");
    }
    // The window ends: registered again with the default registration life.
    let acts = beat(&mut c, end);
    assert!(
        matches!(&acts[..], [Action::Register { pool_handle, pe }] if pool_handle == "AppA" && pe.id == id1 && pe.registration_life == 300_000),
        "{acts:?}"
    );
    assert!(c.keep_alive_ok(id1));
}

fn ack(version: u64, accepted: bool, active: u64, error: Option<&str>) -> DaemonMessage {
    DaemonMessage::ConfigAck(legacy_protocol::ConfigAck {
        version,
        accepted,
        active_version: active,
        error: error.map(Into::into),
    })
}

fn push_of(c: &Core, daemon: &str) -> Option<PushView> {
    c.status(T0)
        .daemons
        .iter()
        .find(|d| d.id == daemon)
        .and_then(|d| d.last_push.clone())
}

#[test]
fn config_push_versions_acks_and_rejections() {
    let mut c = Core::new(config("broker", "round-robin", ""));
    assert_eq!(
        c.push_version("nobody"),
        Err(PushError::UnknownDaemon("nobody".into()))
    );
    // Configured but never connected.
    assert_eq!(
        c.push_version("d1"),
        Err(PushError::NotConnected("d1".into()))
    );
    c.daemon_connected(T0, &hello("d1", 1));
    c.daemon_message(T0, "d1", &snapshot(1, vec![app(true, &[1])]))
        .expect("snap");
    // Hello says version 1 is in force.
    assert_eq!(c.push_version("d1"), Ok(2));
    c.config_push_sent(T0, "d1", 2);
    let p = push_of(&c, "d1").expect("push");
    assert_eq!((p.version, p.state), (2, PushState::Pending));
    // A second push while the first is unanswered gets the next version.
    assert_eq!(c.push_version("d1"), Ok(3));

    c.daemon_message(T0 + 1, "d1", &ack(2, true, 2, None))
        .expect("ack");
    let p = push_of(&c, "d1").expect("push");
    assert_eq!(p.state, PushState::Accepted);
    assert_eq!(p.active_version, Some(2));
    assert_eq!(c.status(T0).daemons[0].config_version, 2);
    assert_eq!(c.push_version("d1"), Ok(3));
    assert!(c
        .status(T0)
        .events
        .iter()
        .any(|e| e.kind == "config-ack" && e.subject == "d1"));
    assert_eq!(
        c.status(T0).render_pushes(),
        "Daemon configuration\nd1 version 2 in force; push of version 2 acknowledged\n\n"
    );

    // Rejected: the version in force stays, the daemon's message is kept.
    c.config_push_sent(T0 + 2, "d1", 3);
    c.daemon_message(T0 + 3, "d1", &ack(3, false, 2, Some("push:1:1: bad")))
        .expect("nack");
    let p = push_of(&c, "d1").expect("push");
    assert_eq!(p.state, PushState::Rejected);
    assert_eq!(p.error.as_deref(), Some("push:1:1: bad"));
    assert_eq!(c.status(T0).daemons[0].config_version, 2);
    assert_eq!(c.push_version("d1"), Ok(3));
    assert_eq!(
        c.status(T0).render_pushes(),
        "Daemon configuration\nd1 version 2 in force; push of version 3 rejected: push:1:1: bad\n\n"
    );

    // The connection closes before an answer: unanswered, and no push while disconnected.
    c.config_push_sent(T0 + 4, "d1", 3);
    c.daemon_disconnected(T0 + 5, "d1");
    assert_eq!(
        push_of(&c, "d1").expect("push").state,
        PushState::Unanswered
    );
    assert_eq!(
        c.push_version("d1"),
        Err(PushError::NotConnected("d1".into()))
    );
    // No push, no lines: the plain table keeps the seed's shape.
    assert_eq!(
        all_up("broker", "round-robin", "")
            .status(T0)
            .render_pushes(),
        ""
    );
}

// ---- Admin states (issue 19 item 1) ----

fn admin(c: &mut Core, t: u64, target: &str, cmd: AdminCommand) -> Vec<Action> {
    c.admin(t, target, cmd, "uid 0 (root)")
        .expect("known server")
        .1
}

#[test]
fn disable_takes_no_new_sessions_and_keeps_open_ones() {
    let mut c = all_up("broker", "round-robin", "");
    let s1 = c.open_session(T0, "A").expect("ok");
    assert_eq!(s1.server, "IP1");
    let acts = admin(&mut c, T0 + 1, "IP1", AdminCommand::Disable);
    assert!(acts.is_empty(), "no session is moved or closed: {acts:?}");
    assert!(beat(&mut c, T0 + 2_000).is_empty());
    assert_eq!(c.session_server(s1.session), Some("IP1"));
    let v = state(&c, T0 + 2_000, "IP1");
    assert!(!v.selectable);
    assert_eq!(v.admin_state(), AdminState::Disabled);
    assert_eq!(
        v.health,
        Health::Running,
        "an operator stop is not a failure"
    );
    assert!(v.running);
    let r = v.admin.expect("record");
    assert_eq!((r.by.as_str(), r.since_ms), ("uid 0 (root)", T0 + 1));
    // New sessions skip IP1 in round-robin order.
    assert_eq!(servers(&mut c, 4), ["IP2", "IP3", "IP2", "IP3"]);
    // No failure event: since the command, only the admin event names IP1.
    let st = c.status(T0 + 2_000);
    let since: Vec<&str> = st
        .events
        .iter()
        .filter(|e| e.subject == "IP1" && e.at_ms > T0)
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(since, ["admin"]);
    admin(&mut c, T0 + 3_000, "IP1", AdminCommand::Enable);
    assert!(state(&c, T0 + 3_000, "IP1").selectable);
    assert!(servers(&mut c, 3).contains(&"IP1".to_string()));
}

#[test]
fn drain_ends_in_disabled_when_the_last_session_closes() {
    let mut c = all_up("broker", "round-robin", "");
    let s1 = c.open_session(T0, "A").expect("ok");
    let s4 = {
        servers(&mut c, 2);
        c.open_session(T0, "A").expect("ok")
    };
    assert_eq!((s1.server.as_str(), s4.server.as_str()), ("IP1", "IP1"));
    let acts = admin(
        &mut c,
        T0,
        "A/IP1",
        AdminCommand::Drain { timeout_ms: None },
    );
    assert!(acts.is_empty(), "{acts:?}");
    assert_eq!(state(&c, T0, "IP1").admin_state(), AdminState::Draining);
    c.close_session(T0 + 10, s1.session);
    assert!(beat(&mut c, T0 + 500).is_empty());
    assert_eq!(
        state(&c, T0 + 500, "IP1").admin_state(),
        AdminState::Draining
    );
    let seq = c.admin_seq();
    c.close_session(T0 + 600, s4.session);
    assert!(beat(&mut c, T0 + 1_000).is_empty());
    let v = state(&c, T0 + 1_000, "IP1");
    assert_eq!(v.admin_state(), AdminState::Disabled);
    assert!(!v.selectable);
    assert!(c.admin_seq() > seq, "the state file must be saved again");
}

#[test]
fn drain_timeout_closes_the_remaining_sessions_once() {
    let mut c = all_up("broker", "round-robin", "");
    let s1 = c.open_session(T0, "A").expect("ok");
    admin(
        &mut c,
        T0,
        "IP1",
        AdminCommand::Drain {
            timeout_ms: Some(5_000),
        },
    );
    quiet_until(&mut c, 5_000);
    assert_eq!(
        beat(&mut c, T0 + 5_000),
        closed(s1.session, "drain timeout")
    );
    assert!(beat(&mut c, T0 + 5_200).is_empty(), "asked once only");
    c.close_session(T0 + 5_300, s1.session);
    beat(&mut c, T0 + 5_400);
    assert_eq!(
        state(&c, T0 + 5_400, "IP1").admin_state(),
        AdminState::Disabled
    );
}

#[test]
fn maintenance_on_off_and_unknown_servers() {
    let mut c = all_up("broker", "round-robin", "");
    let s1 = c.open_session(T0, "A").expect("ok");
    assert_eq!(
        c.admin(T0, "IP1", AdminCommand::Maintenance(false), "x"),
        Err(AdminError::NotInMaintenance("IP1".into()))
    );
    assert_eq!(
        c.admin(T0, "IP9", AdminCommand::Disable, "x"),
        Err(AdminError::UnknownServer("IP9".into()))
    );
    assert_eq!(
        c.admin(T0, "B/IP1", AdminCommand::Disable, "x"),
        Err(AdminError::UnknownServer("B/IP1".into()))
    );
    assert!(admin(&mut c, T0, "IP1", AdminCommand::Maintenance(true)).is_empty());
    assert_eq!(c.session_server(s1.session), Some("IP1"));
    let v = state(&c, T0, "IP1");
    assert_eq!(v.admin_state(), AdminState::Maintenance);
    assert!(!v.selectable);
    let table = c.status(T0).render_table();
    assert!(
        table.contains("IP1 is running (maintenance by uid 0 (root) at 2023-11-14 22:13:20 UTC, 1 sessions open)"),
        "{table}"
    );
    admin(&mut c, T0 + 1, "IP1", AdminCommand::Maintenance(false));
    assert!(state(&c, T0 + 1, "IP1").selectable);
}

#[test]
fn mode_a_disable_deregisters_and_enable_registers_again() {
    let mut c = all_up("registration", "round-robin", "");
    let id = state(&c, T0, "IP1").pe_id;
    assert!(c.keep_alive_ok(id));
    let acts = admin(&mut c, T0, "IP1", AdminCommand::Disable);
    assert_deregistered(&c, &acts, id);
    let acts = admin(&mut c, T0 + 1, "IP1", AdminCommand::Enable);
    assert!(matches!(&acts[..], [Action::Register { pe, .. }] if pe.id == id));
}

#[test]
fn admin_state_is_restored_and_kept_over_a_reload() {
    let mut c = all_up("broker", "round-robin", "");
    admin(&mut c, T0, "IP2", AdminCommand::Disable);
    let saved = c.admin_records();
    assert_eq!(saved.len(), 1);
    // A new core (proxy restart) with the saved records.
    let mut d = all_up("broker", "round-robin", "");
    d.restore_admin(T0 + 1, saved.clone());
    assert_eq!(state(&d, T0 + 1, "IP2").admin_state(), AdminState::Disabled);
    assert_eq!(servers(&mut d, 4), ["IP1", "IP3", "IP1", "IP3"]);
    // A reload keeps it.
    d.apply_config(T0 + 2, config("broker", "round-robin", ""));
    assert_eq!(state(&d, T0 + 2, "IP2").admin_state(), AdminState::Disabled);
    assert_eq!(d.admin_records(), saved);
}

#[test]
fn utc_time_formats_civil_dates() {
    assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc_time(T0), "2023-11-14 22:13:20 UTC");
    assert_eq!(
        utc_time(T0 + 999),
        "2023-11-14 22:13:20 UTC",
        "seconds truncated"
    );
    assert_eq!(utc_time(1_709_164_800_000), "2024-02-29 00:00:00 UTC");
}

// ---- issue 19 items 3–5: checks, both-channels rule, epochs, close vs reconnect ----

const CHECK: &str = "[application.check]\ntype = \"tcp\"\nexpect = \"+READY\"\ninterval_ms = 500\ntimeout_ms = 500\nrise = 2\nfall = 2\n";

/// The probes of `server` among `acts`, with their epochs.
fn probes(acts: &[Action], server: &str) -> Vec<u64> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Probe {
                server: s, epoch, ..
            } if s == server => Some(*epoch),
            _ => None,
        })
        .collect()
}

fn check_events(c: &Core, server: &str) -> usize {
    c.status(T0)
        .events
        .iter()
        .filter(|e| e.kind == "check" && e.subject == server)
        .count()
}

#[test]
fn configured_check_runs_every_interval_while_running_and_not_twice_at_once() {
    let mut c = broker("", CHECK);
    // all_up's snapshots already started the first checks at T0.
    let acts = c.tick(T0 + 100);
    assert!(probes(&acts, "IP1").is_empty(), "interval not over");
    // Still in flight at +500: no second check until it answers (or interval + timeout).
    assert!(probes(&c.tick(T0 + 500), "IP1").is_empty());
    let acts = c.probe_result(T0 + 510, "A", "IP1", true);
    assert_eq!(probes(&acts, "IP1").len(), 1, "answered and due: next one");
    // The check sent is the configured one.
    let acts = c.probe_result(T0 + 520, "A", "IP2", true);
    assert!(acts.iter().any(|a| matches!(a, Action::Probe { server, check, .. }
        if server == "IP2" && check.expect.as_deref() == Some("+READY") && check.timeout_ms == 500)));
    // A stopped application is not checked.
    c.daemon_message(T0 + 1_200, "d3", &delta(2, vec![app(false, &[])]))
        .expect("delta");
    let acts = c.tick(T0 + 5_000);
    assert!(probes(&acts, "IP3").is_empty());
}

/// Rise/fall hysteresis (haproxy `check rise 2 fall 2`): a server toggling around the
/// threshold (pass, fail, pass, fail …) never changes state; two failures in a row take
/// it out, a single pass does not bring it back, two passes do.
#[test]
fn check_hysteresis_does_not_flap_around_the_threshold() {
    let mut c = broker("", CHECK);
    let mut t = T0;
    for i in 0..20 {
        t += 500;
        beat(&mut c, t);
        c.probe_result(t + 10, "A", "IP1", i % 2 == 0);
        assert!(state(&c, t + 10, "IP1").selectable, "toggle {i}");
    }
    assert_eq!(check_events(&c, "IP1"), 0, "no state change while toggling");
    t += 500;
    beat(&mut c, t);
    c.probe_result(t, "A", "IP1", false);
    c.probe_result(t + 500, "A", "IP1", false);
    let s = state(&c, t + 500, "IP1");
    assert!(!s.selectable);
    assert_eq!(s.health, Health::Suspect);
    assert_eq!(s.reason, "check failing; daemon reports running");
    assert_eq!(servers(&mut c, 2), ["IP2", "IP3"]);
    c.probe_result(t + 1_000, "A", "IP1", true);
    c.probe_result(t + 1_500, "A", "IP1", false);
    c.probe_result(t + 2_000, "A", "IP1", true);
    assert!(
        !state(&c, t + 2_000, "IP1").selectable,
        "one pass is not rise 2"
    );
    c.probe_result(t + 2_500, "A", "IP1", true);
    assert!(state(&c, t + 2_500, "IP1").selectable, "two passes");
    assert_eq!(check_events(&c, "IP1"), 2, "exactly out once, in once");
}

/// Results of checks and relay connects started before the verdict changed are discarded
/// (issue 19: failures started during an outage flipped a recovered server down again).
#[test]
fn late_results_from_before_a_recovery_are_discarded() {
    let mut c = all_up("broker", "round-robin", "");
    let old = c.open_session(T0, "A").expect("ok");
    assert_eq!(old.server, "IP1");
    // A second session on IP1 whose connect is still pending when IP1 fails.
    servers(&mut c, 2);
    let late = c.open_session(T0, "A").expect("ok");
    assert_eq!(late.server, "IP1");
    // The first connect fails: out; its probe starts in the new epoch.
    let acts = c.session_server_unreachable(T0 + 10, old.session);
    let epochs = probes(&acts, "IP1");
    assert_eq!(epochs.len(), 1);
    assert!(!state(&c, T0 + 10, "IP1").selectable);
    // The probe passes: back in (rise 1 without a configured check).
    c.check_result(T0 + 20, "A", "IP1", epochs[0], true);
    assert!(state(&c, T0 + 20, "IP1").selectable);
    // The late connect failure, started before the recovery, arrives now: ignored.
    c.session_server_unreachable(T0 + 2_000, late.session);
    assert!(
        state(&c, T0 + 2_000, "IP1").selectable,
        "stale connect failure"
    );
    // So is a late check failure of the old epoch.
    c.check_result(T0 + 2_001, "A", "IP1", epochs[0], false);
    assert!(
        state(&c, T0 + 2_001, "IP1").selectable,
        "stale check failure"
    );
    let flips = c
        .status(T0)
        .events
        .iter()
        .filter(|e| e.kind == "server-state" && e.subject == "IP1" && e.at_ms > T0)
        .count();
    assert_eq!(flips, 2, "out once, in once");
}

/// Seed 002: declared down only when the daemon and the check agree; an explicit exit
/// report is enough alone; the daemon alone (silent, check passing) is not.
#[test]
fn down_needs_both_channels_except_an_exit_report() {
    let mut c = broker("", CHECK);
    let a = c.open_session(T0, "A").expect("ok");
    assert_eq!(a.server, "IP1");
    // Check fails twice while the daemon reports running: out of selection, not down,
    // the open session stays.
    let mut acts = c.probe_result(T0 + 100, "A", "IP1", false);
    acts.extend(c.probe_result(T0 + 600, "A", "IP1", false));
    assert!(!acts
        .iter()
        .any(|x| matches!(x, Action::CloseSession { .. } | Action::MoveSession { .. })));
    assert_eq!(state(&c, T0 + 600, "IP1").health, Health::Suspect);
    // Now the daemon goes silent too (3 × 1 s): both agree → down, and the session is
    // closed (on_server_failure = "close", the default).
    let t = T0 + 3_001;
    let mut acts = Vec::new();
    for d in ["d2", "d3"] {
        acts.extend(c.daemon_message(t, d, &heartbeat(1)).expect("hb"));
    }
    acts.extend(c.tick(t));
    let s = state(&c, t, "IP1");
    assert_eq!(s.health, Health::Down);
    assert_eq!(s.reason, "daemon silent and service probe failed");
    assert!(acts.contains(&Action::CloseSession {
        session: a.session,
        reason: "daemon silent and service probe failed".into()
    }));
    // IP2: daemon silent but check passing → suspect and selectable (within grace).
    let mut c = broker("", CHECK);
    c.probe_result(T0 + 100, "A", "IP2", true);
    for d in ["d1", "d3"] {
        c.daemon_message(t, d, &heartbeat(1)).expect("hb");
    }
    c.tick(t);
    let s = state(&c, t, "IP2");
    assert_eq!(s.health, Health::Suspect);
    assert!(s.selectable);
    // IP3: an exit report takes it out at once though its check still passes.
    c.probe_result(t, "A", "IP3", true);
    c.daemon_message(t + 1, "d3", &delta(2, vec![app(false, &[])]))
        .expect("delta");
    let s = state(&c, t + 1, "IP3");
    assert_eq!(s.health, Health::NotRunning);
    assert!(!s.selectable);
}

#[test]
fn check_and_failover_keys_are_validated() {
    let base = |app_extra: &str| {
        let text = format!(
            "mode = \"broker\"\n[daemon_link]\nauth = \"none\"\n[[application]]\nname = \"A\"\npool_handle = \"A\"\npolicy = \"round-robin\"\nlisten = \"127.0.0.1:8000\"\n{app_extra}\n[[application.server]]\naddress = \"127.0.0.1\"\nport = 7\ndaemon = \"d\"\n"
        );
        Config::parse(&text, "t")
    };
    let c = base(CHECK).expect("valid");
    let ck = c.applications[0].check.clone().expect("check");
    assert_eq!((ck.rise, ck.fall, ck.interval_ms), (2, 2, 500));
    let e = base("replay_lines = 1").expect_err("needs reconnect");
    assert!(e.to_string().contains("replay_lines"), "{e}");
    base("on_server_failure = \"reconnect\"\nreplay_lines = 1\ndiscard_lines = 2").expect("ok");
    let e = base("[application.check]\ntype = \"command\"").expect_err("no command");
    assert!(e.to_string().contains("check.command"), "{e}");
    let e = base("[application.check]\ntype = \"http\"\nexpect = \"x\"").expect_err("tcp key");
    assert!(e.to_string().contains("send and expect"), "{e}");
    let e = base("[application.check]\nfall = 0").expect_err("fall 0");
    assert!(e.to_string().contains("rise and fall"), "{e}");
    let e = base("[application.check]\ntype = \"http\"\npath = \"/a b\"").expect_err("path");
    assert!(e.to_string().contains("check.path"), "{e}");
    let d = crate::config::Detection::default();
    assert_eq!(
        (
            d.connect_timeout_ms,
            d.recheck_ms,
            d.tick_ms,
            d.probe_timeout_ms
        ),
        (1_000, 250, 100, 1_000)
    );
}
// ---- pooling table fed by the daemons (issue 19 item 2), proxy identity (item 7),
// ---- lifetime from the process start (item 8)

/// A pool whose servers join from the daemons: only d1 and d2 may.
fn join_config(mode: &str) -> Config {
    let listen = listen_key(mode);
    let text = format!(
        r#"
mode = "{mode}"
[daemon_link]
auth = "none"
[[application]]
name = "A"
pool_handle = "AppA"
policy = "round-robin"
{listen}
[application.join]
daemons = ["d1", "d2"]
lifetime_s = 3600
"#
    );
    Config::parse(&text, "test").expect("valid join config")
}

/// `A` as a daemon reports it with a service port and optionally an address.
fn reported(port: Option<u16>, host: Option<&str>, pid: u32) -> AppStatus {
    let mut a = app(true, &[pid]);
    a.ports = port
        .map(|p| {
            vec![PortStatus {
                port: p,
                listening: Some(true),
                connections: None,
            }]
        })
        .unwrap_or_default();
    a.host = host.map(|h| h.parse().expect("ip"));
    a
}

fn peer(ip: &str) -> IpAddr {
    ip.parse().expect("ip")
}

/// Daemon `d` connects from `from` and its first snapshot reports `app`; the core's
/// actions.
fn join_from(c: &mut Core, d: &str, from: &str, app: AppStatus) -> Vec<Action> {
    c.daemon_connected_from(T0, &hello(d, 1), peer(from));
    c.daemon_message(T0, d, &snapshot(1, vec![app]))
        .expect("snapshot")
}

fn table(c: &Core) -> Vec<(String, SocketAddr, bool)> {
    c.status(T0).applications[0]
        .servers
        .iter()
        .map(|s| (s.name.clone(), s.address, s.joined))
        .collect()
}

#[test]
fn daemons_feed_the_pooling_table_and_only_allowed_ones_join() {
    let mut c = Core::new(join_config("broker"));
    assert!(table(&c).is_empty(), "nothing declared");
    // d1 reports its address, d2 none (its connection's address is used), d3 is not
    // allowed to join.
    join_from(
        &mut c,
        "d1",
        "127.0.0.99",
        reported(Some(7001), Some("10.0.0.1"), 11),
    );
    join_from(&mut c, "d2", "127.0.0.12", reported(Some(7002), None, 12));
    join_from(&mut c, "d3", "127.0.0.13", reported(Some(7003), None, 13));
    assert_eq!(
        table(&c),
        vec![
            ("d1".into(), "10.0.0.1:7001".parse().expect("sa"), true),
            ("d2".into(), "127.0.0.12:7002".parse().expect("sa"), true),
        ]
    );
    let status = c.status(T0);
    assert!(status
        .events
        .iter()
        .any(|e| e.kind == "join-refused" && e.subject == "d3"));
    // Refused once, not at every report.
    c.daemon_message(
        T0 + 1,
        "d3",
        &delta(2, vec![reported(Some(7003), None, 14)]),
    )
    .expect("delta");
    let refusals = c
        .status(T0)
        .events
        .iter()
        .filter(|e| e.kind == "join-refused")
        .count();
    assert_eq!(refusals, 1);
    // Sessions go to the joined servers only, in round-robin order.
    assert_eq!(servers(&mut c, 4), vec!["d1", "d2", "d1", "d2"]);
    // The joined servers carry the join settings (lifetime 1 h).
    assert_eq!(state(&c, T0, "d1").lifetime_remaining_ms, Some(3_600_000));
    // d1's configuration drops A: d1 leaves the table; a session on it is closed
    // (`on_server_failure = "close"`, the default).
    let s = c.open_session(T0, "A").expect("ok");
    assert_eq!(s.server, "d1");
    let acts = c
        .daemon_message(
            T0 + 2,
            "d1",
            &DaemonMessage::Delta(Delta {
                state_seq: 2,
                config_version: 2,
                taken_at_ms: 0,
                changed: Vec::new(),
                removed: vec!["A".into()],
            }),
        )
        .expect("delta");
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::CloseSession { session, .. } if *session == s.session)),
        "{acts:?}"
    );
    assert_eq!(
        table(&c),
        vec![("d2".into(), "127.0.0.12:7002".parse().expect("sa"), true)]
    );
    // Added back (and on another port): joins again.
    c.daemon_message(
        T0 + 3,
        "d1",
        &delta(3, vec![reported(Some(7101), Some("10.0.0.1"), 11)]),
    )
    .expect("delta");
    assert_eq!(table(&c).len(), 2);
    assert_eq!(
        state(&c, T0 + 3, "d1").address,
        "10.0.0.1:7101".parse::<SocketAddr>().expect("sa")
    );
    // A report without a port cannot join (logged), and a port change moves the server.
    c.daemon_message(
        T0 + 4,
        "d2",
        &delta(2, vec![reported(Some(7202), None, 12)]),
    )
    .expect("delta");
    assert_eq!(
        state(&c, T0 + 4, "d2").address,
        "127.0.0.12:7202".parse::<SocketAddr>().expect("sa")
    );
    c.daemon_message(T0 + 5, "d2", &delta(3, vec![reported(None, None, 12)]))
        .expect("delta");
    assert_eq!(
        table(&c).iter().map(|t| t.0.as_str()).collect::<Vec<_>>(),
        vec!["d1"]
    );
}

#[test]
fn joined_servers_are_registered_in_mode_a_and_deregistered_when_they_leave() {
    let mut c = Core::new(join_config("registration"));
    let acts = join_from(&mut c, "d1", "127.0.0.11", reported(Some(7001), None, 11));
    let id = legacy_pe_id(None, "A", "d1");
    assert!(
        matches!(&acts[..], [Action::Register { pool_handle, pe }] if pool_handle == "AppA" && pe.id == id
            && pe.user_transport == TransportParameter::Tcp { port: 7001, transport_use: TransportUse::DataOnly, address: peer("127.0.0.11") }),
        "{acts:?}"
    );
    // An unlisted daemon reporting the same application registers nothing.
    let acts = join_from(&mut c, "d3", "127.0.0.13", reported(Some(7003), None, 13));
    assert!(acts.is_empty(), "{acts:?}");
    assert_eq!(c.registrations().len(), 1);
    // A snapshot without the application (daemon reconfigured): deregistered.
    let acts = c
        .daemon_message(T0 + 1, "d1", &snapshot(2, Vec::new()))
        .expect("snapshot");
    assert_eq!(
        acts,
        vec![Action::Deregister {
            pool_handle: "AppA".into(),
            pe_id: id
        }]
    );
}

#[test]
fn joined_servers_and_their_state_survive_a_reload() {
    let mut c = Core::new(join_config("broker"));
    join_from(&mut c, "d1", "127.0.0.11", reported(Some(7001), None, 11));
    let s = c.open_session(T0, "A").expect("ok");
    let acts = c.apply_config(T0 + 1, join_config("broker"));
    assert!(acts.is_empty(), "no move over a reload: {acts:?}");
    assert_eq!(state(&c, T0 + 1, "d1").active_sessions, 1);
    assert_eq!(c.session_server(s.session), Some("d1"));
    // Changed join settings apply to the server already joined.
    let longer = join_config("broker");
    let text = "mode = \"broker\"\n[daemon_link]\nauth = \"none\"\n[[application]]\nname = \"A\"\npool_handle = \"AppA\"\npolicy = \"round-robin\"\nlisten = \"127.0.0.1:8000\"\n[application.join]\ndaemons = [\"d1\", \"d2\"]\nlifetime_s = 7200\n";
    assert_ne!(longer, Config::parse(text, "t").expect("valid"));
    c.apply_config(T0 + 1, Config::parse(text, "t").expect("valid"));
    assert_eq!(
        state(&c, T0 + 1, "d1").lifetime_remaining_ms,
        Some(7_199_999)
    );
    // Removing d1 from the allow-list removes it from the table (its session is closed).
    let text = "mode = \"broker\"\n[daemon_link]\nauth = \"none\"\n[[application]]\nname = \"A\"\npool_handle = \"AppA\"\npolicy = \"round-robin\"\nlisten = \"127.0.0.1:8000\"\n[application.join]\ndaemons = [\"d2\"]\n";
    let acts = c.apply_config(T0 + 2, Config::parse(text, "t").expect("valid"));
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::CloseSession { session, .. } if *session == s.session)),
        "{acts:?}"
    );
    assert!(table(&c).is_empty());
}

#[test]
fn lifetime_counts_from_the_process_start_across_a_proxy_restart() {
    // The legacy process started 6 s before the (re)started proxy hears of it: with a
    // 10 s lifetime it has 4 s left, not 10 s (issue 19 item 8).
    let started = T0 - 6_000;
    let mut c = Core::new(config("broker", "round-robin", "lifetime_s = 10"));
    for (i, d) in ["d1", "d2", "d3"].iter().enumerate() {
        let mut a = app(true, &[100 + i as u32]);
        if *d == "d1" {
            a.started_at_ms = Some(started);
        }
        c.daemon_connected(T0, &hello(d, 1));
        c.daemon_message(T0, d, &snapshot(1, vec![a]))
            .expect("snapshot");
    }
    let v = state(&c, T0, "IP1");
    assert_eq!(v.lifetime_remaining_ms, Some(4_000));
    assert_eq!(v.running_since_ms, Some(started));
    // Without a reported start time the proxy counts from when it saw the process.
    assert_eq!(state(&c, T0, "IP2").running_since_ms, Some(T0));
    assert!(beat(&mut c, T0 + 2_000).is_empty());
    assert!(beat(&mut c, T0 + 3_999).is_empty());
    assert!(state(&c, T0 + 3_999, "IP1").selectable);
    beat(&mut c, T0 + 4_000);
    let v = state(&c, T0 + 4_000, "IP1");
    assert!(!v.selectable);
    assert_eq!(v.reason, "lifetime expired");
    // A new process (new start time) starts a new work cycle.
    let mut a = app(true, &[555]);
    a.started_at_ms = Some(T0 + 4_500);
    c.daemon_message(T0 + 5_000, "d1", &delta(2, vec![a]))
        .expect("delta");
    assert_eq!(
        state(&c, T0 + 5_000, "IP1").lifetime_remaining_ms,
        Some(9_500)
    );
}

#[test]
fn proxy_id_makes_the_mode_a_pe_ids_of_two_proxies_distinct() {
    let text = |id: &str| {
        let base = "mode = \"registration\"\n[daemon_link]\nauth = \"none\"\n[[application]]\nname = \"A\"\npool_handle = \"AppA\"\npolicy = \"round-robin\"\n[[application.server]]\nname = \"IP1\"\naddress = \"127.0.0.11\"\nport = 7000\ndaemon = \"d1\"\n";
        if id.is_empty() {
            base.to_string()
        } else {
            format!("proxy_id = \"{id}\"\n{base}")
        }
    };
    let ids: Vec<u32> = ["", "proxy-1", "proxy-2"]
        .iter()
        .map(|id| {
            let mut c = Core::new(Config::parse(&text(id), "t").expect("valid"));
            c.daemon_connected(T0, &hello("d1", 1));
            let acts = c
                .daemon_message(T0, "d1", &snapshot(1, vec![app(true, &[1])]))
                .expect("snapshot");
            match &acts[..] {
                [Action::Register { pe, .. }] => {
                    assert_eq!(state(&c, T0, "IP1").pe_id, pe.id);
                    pe.id
                }
                other => panic!("{other:?}"),
            }
        })
        .collect();
    // Without proxy_id: the single-proxy id as before.
    assert_eq!(ids[0], stable_pe_id(&["A", "IP1"]));
    assert_ne!(ids[1], ids[0]);
    assert_ne!(ids[2], ids[1]);
    assert_ne!(ids[2], ids[0]);
    assert_eq!(ids[1], legacy_pe_id(Some("proxy-1"), "A", "IP1"));
    assert!(Config::parse(&format!("proxy_id = \"\"\n{}", text("")), "t").is_err());
}

/// Issue 19 item 1: a weekly window in Europe/Berlin on the day clocks go forward starts
/// at 03:00 CEST (01:00 UTC) and drains: the open session stays, new ones go elsewhere;
/// one real hour later it ends.
#[test]
fn zoned_window_across_spring_forward_drains_and_ends_after_one_hour() {
    // 2026-03-29 00:30 UTC (a Sunday; 01:30 CET, before the change).
    let t0: u64 = 1_774_744_200_000;
    let start = t0 + 30 * 60_000; // 01:00 UTC = 03:00 CEST
    let end = start + 3_600_000; // 02:00 UTC = 04:00 CEST
    let mut c = Core::new(config(
        "broker",
        "round-robin",
        "maintenance = [\"Sun 02:00-04:00 Europe/Berlin\"]",
    ));
    for (i, d) in ["d1", "d2", "d3"].iter().enumerate() {
        c.daemon_connected(t0, &hello(d, 1));
        c.daemon_message(t0, d, &snapshot(1, vec![app(true, &[100 + i as u32])]))
            .expect("snapshot");
    }
    let s = c.open_session(t0, "A").expect("ok");
    assert_eq!(s.server, "IP1");
    let mut t = t0;
    while t + 2_000 < start {
        t += 2_000;
        assert!(beat(&mut c, t).is_empty(), "at {t}");
    }
    assert!(state(&c, start - 1, "IP1").selectable);
    // The window starts: nothing moves, IP1 takes no new session.
    assert!(beat(&mut c, start).is_empty());
    let v = state(&c, start, "IP1");
    assert!(!v.selectable);
    assert_eq!(v.reason, "maintenance window");
    assert_eq!(c.session_server(s.session), Some("IP1"));
    let next: Vec<String> = (0..3)
        .map(|_| c.open_session(start, "A").expect("ok").server)
        .collect();
    assert!(next.iter().all(|n| n != "IP1"), "{next:?}");
    // One real hour later (04:00 CEST) IP1 is back.
    let mut t = start;
    while t + 2_000 < end {
        t += 2_000;
        beat(&mut c, t);
    }
    assert!(!state(&c, end - 1, "IP1").selectable);
    beat(&mut c, end);
    assert!(state(&c, end, "IP1").selectable);
}

#[test]
fn joined_servers_are_listed_by_name_whatever_the_report_order() {
    let mut c = Core::new(join_config("broker"));
    join_from(&mut c, "d2", "127.0.0.12", reported(Some(7002), None, 12));
    join_from(&mut c, "d1", "127.0.0.11", reported(Some(7001), None, 11));
    let names: Vec<String> = table(&c).into_iter().map(|t| t.0).collect();
    assert_eq!(names, vec!["d1", "d2"]);
}

/// Issue 19 item 4 with default settings (no `[application.check]`): a daemon that goes
/// silent (connection open, no frame: a frozen host) takes its server out of selection as
/// soon as it is stale, without a declaration of down (open sessions stay); a daemon that
/// *disconnected* (a daemon restart: the host's kernel closed the connection) keeps it
/// selectable while the TCP probe passes; a check that a frozen process fails, or
/// `tcp_probe_vouches = true`, keeps a silent daemon's server selectable as before.
#[test]
fn silent_daemon_without_a_vouching_check_is_out_of_selection_but_not_down() {
    let t_stale = T0 + 3_001; // 3 × the 1 s heartbeat of `hello`
    let silent_d1 = |c: &mut Core, t: u64| {
        for d in ["d2", "d3"] {
            c.daemon_message(t, d, &heartbeat(1)).expect("hb");
        }
        c.tick(t)
    };
    // Defaults: out at the first tick after staleness, not before.
    let mut c = all_up("broker", "round-robin", "");
    let open = c.open_session(T0, "A").expect("session");
    assert_eq!(open.server, "IP1");
    silent_d1(&mut c, T0 + 2_999);
    assert!(
        state(&c, T0 + 2_999, "IP1").selectable,
        "fresh until 3 beats missed"
    );
    let acts = silent_d1(&mut c, t_stale);
    let s = state(&c, t_stale, "IP1");
    assert!(!s.selectable);
    assert_eq!(s.health, Health::Suspect);
    assert_eq!(
        s.reason,
        "daemon silent; no application check vouches for the process"
    );
    assert!(
        !acts
            .iter()
            .any(|a| matches!(a, Action::CloseSession { .. } | Action::MoveSession { .. })),
        "out of selection is not down: the open session stays: {acts:?}"
    );
    assert_eq!(servers(&mut c, 4), ["IP2", "IP3", "IP2", "IP3"]);
    // A frame from d1 brings it back at once.
    c.daemon_message(t_stale + 100, "d1", &heartbeat(2))
        .expect("hb");
    c.tick(t_stale + 100);
    assert!(state(&c, t_stale + 100, "IP1").selectable);

    // A disconnect (daemon restart) is not silence: selectable while the probe passes.
    let mut c = all_up("broker", "round-robin", "");
    c.daemon_disconnected(T0 + 1, "d1");
    c.tick(T0 + 1);
    c.probe_result(T0 + 10, "A", "IP1", true);
    assert!(state(&c, T0 + 10, "IP1").selectable);

    // A banner check vouches: silent but passing stays selectable (the rule before).
    let mut c = broker(
        "",
        "[application.check]\ntype = \"tcp\"\nexpect = \"hello\"\n",
    );
    silent_d1(&mut c, t_stale);
    assert_eq!(state(&c, t_stale, "IP1").health, Health::Suspect);
    assert!(state(&c, t_stale, "IP1").selectable);
    // A plain TCP check (connect, `send` only) does not vouch.
    let mut c = broker(
        "",
        "[application.check]\ntype = \"tcp\"\nsend = \"PING\\r\\n\"\n",
    );
    silent_d1(&mut c, t_stale);
    assert!(!state(&c, t_stale, "IP1").selectable);
    // `tcp_probe_vouches = true`: the old behaviour, selectable during the grace.
    let mut cfg = config("broker", "round-robin", "");
    cfg.detection.tcp_probe_vouches = true;
    let mut c = up(cfg);
    silent_d1(&mut c, t_stale);
    assert!(state(&c, t_stale, "IP1").selectable);
}

/// A stall of the proxy itself (the driver's tick comes late) is not daemon silence: after
/// [`Core::resume_after_stall`] no server leaves selection before its daemon had a chance.
#[test]
fn a_stall_of_the_proxy_is_not_daemon_silence() {
    let mut c = all_up("registration", "round-robin", "");
    beat(&mut c, T0 + 500);
    assert_eq!(c.registrations().len(), 3);
    // The proxy was stopped for 10 s: every daemon looks silent for 10 s.
    let t = T0 + 10_500;
    c.resume_after_stall(t, 10_000);
    let acts = c.tick(t);
    assert!(
        !acts.iter().any(|a| matches!(a, Action::Deregister { .. })),
        "{acts:?}"
    );
    assert!(state(&c, t, "IP1").selectable);
    // Real silence after the stall still counts: 3 heartbeats (3 s) later, out.
    let acts = c.tick(t + 3_001);
    assert!(!state(&c, t + 3_001, "IP1").selectable);
    assert!(acts.iter().any(|a| matches!(a, Action::Deregister { .. })));
}

/// The standby of an active/standby pair registers nothing and answers no keep-alive; it
/// keeps the pooling table, so that becoming active registers every selectable server at
/// once, and stepping down withdraws them all.
#[test]
fn standby_registers_nothing_and_takes_over_with_everything() {
    let mut cfg = config("registration", "round-robin", "");
    cfg.proxy_id = Some("b".into());
    cfg.ha = Some(crate::config::HaConfig {
        peer: "127.0.0.1:1".parse().expect("addr"),
        priority: 100,
        poll_ms: 200,
        dead_after_ms: 1_000,
        handover_timeout_ms: 10_000,
    });
    let mut c = up(cfg);
    assert!(c.is_standby(), "a pair member starts as standby");
    let acts = beat(&mut c, T0 + 500);
    assert!(!acts.iter().any(|a| matches!(a, Action::Register { .. })));
    assert!(c.registrations().is_empty());
    let id1 = legacy_pe_id(Some("b"), "A", "IP1");
    assert!(!c.keep_alive_ok(id1));
    assert!(state(&c, T0 + 500, "IP1").selectable, "health is kept");
    let acts = c.set_standby(T0 + 600, false);
    let regs: Vec<u32> = acts
        .iter()
        .filter_map(|a| match a {
            Action::Register { pe, .. } => Some(pe.id),
            _ => None,
        })
        .collect();
    assert_eq!(regs.len(), 3);
    assert!(regs.contains(&id1));
    assert!(c.keep_alive_ok(id1));
    let acts = c.set_standby(T0 + 700, true);
    assert_eq!(
        acts.iter()
            .filter(|a| matches!(a, Action::Deregister { .. }))
            .count(),
        3
    );
    assert!(c.registrations().is_empty());
    assert!(!c.keep_alive_ok(id1));
}
