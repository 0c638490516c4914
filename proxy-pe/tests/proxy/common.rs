//! Host test rig: real processes over TCP on loopback. Our `enrp-server`, `proxy-pe`,
//! three `legacy-daemon`s and three `legacy-echo` servers on 127.0.0.11–13.
//!
//! `enrp-server` and `legacy-daemon` are other crates' binaries: the rig takes them from
//! the workspace `target/debug` (run `cargo build -p enrp-server -p legacy-daemon` first;
//! the rig builds them itself if they are missing).
//!
//! Waits poll the proxy's control port until a condition on its *state* holds; the 30 s
//! limit only guards against hangs.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use asap::transport::{Event, Msg, Transport, TransportConfig, TransportKind};
use asap::wire::asap_msg::HandleResolution;
use asap::wire::{AsapMessage, Message, Protocol};
pub use legacy_protocol::test_support::{spawn_logged, Proc};
use proxy_pe::control::{query, Report};
use rserpool_tests::fs::target_dir;
use rserpool_tests::net::free_port;
use rserpool_tests::registrar::tcp_users;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub fn bin(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    if !p.exists() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-p", "enrp-server", "-p", "legacy-daemon"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build");
        assert!(st.success(), "building {name} failed");
    }
    p
}

pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Proc {
    spawn_logged(name, program, args, &[], log)
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// Lowest and one past the highest port handed out: below Linux's default ephemeral range
/// (32768-60999), so no outgoing connection of any process can be holding the port when
/// a proxy or registrar binds it (that race refused a CI run's sessions).
const PORTS: (u16, u16) = (20_000, 32_700);

/// A free port for this test process: a pid-derived block (parallel test binaries rarely
/// collide), skipping ports that cannot be bound right now.
pub fn port() -> u16 {
    let span = u32::from(PORTS.1 - PORTS.0);
    let base = (std::process::id() % 600) * 20;
    loop {
        let n = u32::from(NEXT_PORT.fetch_add(1, Ordering::SeqCst));
        let p = PORTS.0 + ((base + n) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

pub struct Rig {
    pub dir: PathBuf,
    pub registrar: Option<Proc>,
    pub registrar_addr: SocketAddr,
    pub echoes: Vec<Option<Proc>>,
    pub echo_addrs: Vec<SocketAddr>,
    pub daemons: Vec<Option<Proc>>,
    pub daemon_ports: Vec<u16>,
    pub proxies: Vec<Option<Proc>>,
    pub controls: Vec<SocketAddr>,
    pub listens: Vec<SocketAddr>,
    pub config_paths: Vec<PathBuf>,
    /// Mode B: also give each proxy an ASAP session endpoint (registered instead of the
    /// plain listener).
    pub with_asap: bool,
    pub asap_listens: Vec<SocketAddr>,
    /// Appended to every proxy configuration (e.g. another `[[application]]`).
    pub proxy_extra: String,
    /// Daemons keep their default reconnect backoff (otherwise capped at 500 ms).
    pub daemon_default_backoff: bool,
    /// Extra `proxy-pe run` arguments of proxy k (e.g. `--metrics`).
    pub proxy_args: Vec<Vec<String>>,
}

pub const NAMES: [&str; 3] = ["IP1", "IP2", "IP3"];

/// `enrp-server` arguments of the rig's registrars: ASAP over TCP on `127.0.0.1:asap`, no
/// announcements, third-party registrations from loopback (the proxy registers its legacy
/// servers' addresses), PE keep-alives every `keep_alive_ms`; then `extra`.
pub fn registrar_args(asap: u16, keep_alive_ms: u32, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        format!("--asap=127.0.0.1:{asap}"),
        "--transport=tcp".into(),
        "--asap-announce=off".into(),
        "--enrp-announce=off".into(),
        "--allow-third-party=127.0.0.0/8".into(),
        "--min-address-scope=loopback".into(),
        format!("--keep-alive-interval={keep_alive_ms}"),
        format!("--keep-alive-timeout={keep_alive_ms}"),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Sends `sig` to a running process of the rig (SIGSTOP/SIGCONT to freeze and thaw it).
pub fn signal(p: &Option<Proc>, sig: i32) {
    let pid = p.as_ref().expect("running").pid();
    // SAFETY: kill(2) on a child this test spawned.
    let r = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig})");
}

impl Rig {
    /// Registrar + three echo servers; no daemons or proxies yet.
    pub fn new(tag: &str) -> Rig {
        let dir = std::env::temp_dir().join(format!("proxy-pe-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let rp = port();
        let registrar_addr: SocketAddr = format!("127.0.0.1:{rp}").parse().expect("addr");
        let registrar = spawn(
            "enrp-server",
            &bin("enrp-server"),
            &registrar_args(rp, 500, &["--enrp=off"]),
            &dir.join("enrp-server.log"),
        );
        let mut r = Rig {
            dir,
            registrar: Some(registrar),
            registrar_addr,
            echoes: Vec::new(),
            echo_addrs: Vec::new(),
            daemons: Vec::new(),
            daemon_ports: Vec::new(),
            proxies: Vec::new(),
            controls: Vec::new(),
            listens: Vec::new(),
            config_paths: Vec::new(),
            with_asap: false,
            asap_listens: Vec::new(),
            proxy_extra: String::new(),
            daemon_default_backoff: false,
            proxy_args: Vec::new(),
        };
        // Each daemon's pre-shared key, in `d1.key` … next to the configurations.
        for i in 0..3 {
            let key = legacy_protocol::auth::Key::generate();
            std::fs::write(r.dir.join(format!("d{}.key", i + 1)), key.to_hex()).expect("key");
        }
        for i in 0..3 {
            let addr: SocketAddr = format!("127.0.0.{}:{}", 11 + i, port()).parse().expect("a");
            r.echo_addrs.push(addr);
            r.echoes.push(None);
            r.start_echo(i);
        }
        r
    }

    pub fn start_echo(&mut self, i: usize) {
        let p = spawn(
            NAMES[i],
            &PathBuf::from(env!("CARGO_BIN_EXE_legacy-echo")),
            &[
                format!("--listen={}", self.echo_addrs[i]),
                format!("--tag={}", NAMES[i]),
            ],
            &self.dir.join(format!("echo-{i}.log")),
        );
        self.echoes[i] = Some(p);
    }

    pub fn kill_echo(&mut self, i: usize) {
        if let Some(mut p) = self.echoes[i].take() {
            p.kill();
        }
    }

    /// Proxy configuration text for proxy `k`.
    pub fn proxy_config(
        &self,
        k: usize,
        mode: &str,
        policy: &str,
        server_extra: &[&str],
    ) -> String {
        let mut s = format!(
            "mode = \"{mode}\"\nregistrar_transport = \"tcp\"\ndaemon_listen = \"127.0.0.1:{}\"\ncontrol_listen = \"{}\"\ncontrol_socket = \"ctl-{k}/control.sock\"\nadmin_state_file = \"admin-{k}.json\"\nregistrars = [\"{}\"]\n\n[detection]\n# Generous: under heavy CI load a daemon heartbeat (100 ms here) can be late by\n# over a second; silence is then reported as suspect, which these tests do not expect.\nheartbeat_miss_factor = 20\nsuspect_grace_ms = 5000\nprobe_interval_ms = 200\n\n[[application]]\nname = \"echo\"\npool_handle = \"EchoPool\"\npolicy = \"{policy}\"\n# legacy-echo is stateless: sessions may move to another server.\non_server_failure = \"reconnect\"\n",
            self.daemon_ports[k], self.controls[k], self.registrar_addr
        );
        if mode == "broker" {
            s += &format!("listen = \"{}\"\n", self.listens[k]);
            if self.with_asap {
                s += &format!("asap_listen = \"{}\"\n", self.asap_listens[k]);
            }
        }
        for (i, name) in NAMES.iter().enumerate() {
            s += &format!(
                "\n[[application.server]]\nname = \"{}\"\naddress = \"{}\"\nport = {}\ndaemon = \"d{}\"\n{}\n",
                name,
                self.echo_addrs[i].ip(),
                self.echo_addrs[i].port(),
                i + 1,
                server_extra.get(i).copied().unwrap_or("")
            );
        }
        s += &self.proxy_extra;
        for i in 1..=3 {
            s += &format!("\n[[daemon]]\nid = \"d{i}\"\nkey_file = \"d{i}.key\"\n");
        }
        s
    }

    /// Starts `n` proxies (each with its own ports) with the same pooling configuration.
    pub fn start_proxies(&mut self, n: usize, mode: &str, policy: &str, extra: &[&str]) {
        for _ in 0..n {
            self.add_proxy(|rig| rig.proxy_config(rig.proxies.len(), mode, policy, extra));
        }
    }

    /// Gives the next proxy its own ports, writes the configuration `config` makes (once
    /// the ports are in the rig) to `proxy-<k>.toml` and starts it.
    pub fn add_proxy(&mut self, config: impl FnOnce(&Rig) -> String) {
        let k = self.proxies.len();
        self.reserve_proxy_ports();
        let path = self.dir.join(format!("proxy-{k}.toml"));
        std::fs::write(&path, config(self)).expect("write");
        self.config_paths.push(path);
        self.proxies.push(None);
        self.start_proxy(k);
    }

    /// [`Rig::new`] with one mode B proxy running `policy` and the three daemons
    /// reporting to it.
    pub fn with_broker(tag: &str, policy: &str) -> Rig {
        Rig::with_proxy(tag, "broker", policy, |_| {})
    }

    /// [`Rig::new`] changed by `setup` (its options: `with_asap`, `proxy_extra`,
    /// `proxy_args`, `daemon_default_backoff`), then one proxy in `mode` running `policy`
    /// and the three daemons reporting to it.
    pub fn with_proxy(tag: &str, mode: &str, policy: &str, setup: impl FnOnce(&mut Rig)) -> Rig {
        let mut rig = Rig::new(tag);
        setup(&mut rig);
        rig.start_proxies(1, mode, policy, &[]);
        rig.start_daemons();
        rig
    }

    /// Free ports for the next proxy: its daemon port, control port, listen and ASAP
    /// listen addresses.
    pub fn reserve_proxy_ports(&mut self) {
        self.daemon_ports.push(port());
        let next = || format!("127.0.0.1:{}", port()).parse().expect("a");
        self.controls.push(next());
        self.listens.push(next());
        self.asap_listens.push(next());
    }

    /// Replaces the registrar by one at the same address started with the
    /// [`registrar_args`] `keep_alive_ms` and `extra`, logging to `log` in the rig's
    /// directory.
    pub fn replace_registrar(&mut self, keep_alive_ms: u32, extra: &[&str], log: &str) {
        if let Some(mut r) = self.registrar.take() {
            r.kill();
        }
        let rp = self.registrar_addr.port();
        self.registrar = Some(spawn(
            "enrp-server",
            &bin("enrp-server"),
            &registrar_args(rp, keep_alive_ms, extra),
            &self.dir.join(log),
        ));
    }

    pub fn start_proxy(&mut self, k: usize) {
        let mut args = vec![
            "run".into(),
            format!("--config={}", self.config_paths[k].display()),
        ];
        args.extend(self.proxy_args.get(k).cloned().unwrap_or_default());
        let p = spawn(
            &format!("proxy-{k}"),
            &PathBuf::from(env!("CARGO_BIN_EXE_proxy-pe")),
            &args,
            &self.dir.join(format!("proxy-{k}.log")),
        );
        self.proxies[k] = Some(p);
    }

    pub fn kill_proxy(&mut self, k: usize) {
        if let Some(mut p) = self.proxies[k].take() {
            p.kill();
        }
    }

    /// Starts the three daemons, each reporting to every proxy started so far.
    pub fn start_daemons(&mut self) {
        for i in 0..3 {
            self.daemons.push(None);
            self.start_daemon(i);
        }
    }

    pub fn start_daemon(&mut self, i: usize) {
        let text = self.daemon_config(i);
        self.start_daemon_with(i, &text);
    }

    /// Daemon `i`'s configuration: polls every 100 ms, reports to every proxy started so
    /// far, counts the echo server's connections and requires its port to listen.
    pub fn daemon_config(&self, i: usize) -> String {
        let mut s = format!(
            "[daemon]\nid = \"d{}\"\nkey_file = \"{}\"\npoll_interval_ms = 100\n\n",
            i + 1,
            self.dir.join(format!("d{}.key", i + 1)).display()
        );
        for p in &self.daemon_ports {
            s += &format!("[[proxy]]\naddress = \"127.0.0.1:{p}\"\n");
            if !self.daemon_default_backoff {
                s += "reconnect_max_ms = 500\n";
            }
            s += "\n";
        }
        let a = self.echo_addrs[i];
        let re = format!("--listen={}", a).replace('.', "\\.");
        s += &format!(
            "[[app]]\nname = \"echo\"\nexe = \"legacy-echo\"\ncmdline = '{re}'\nports = [{}]\ncount_connections = true\nrequire_listen = true\n[app.load]\ncapacity = 10\n",
            a.port()
        );
        s
    }

    /// Starts daemon `i` (`d{i+1}`) with the configuration `text`, written to
    /// `daemon-{i}.toml`.
    pub fn start_daemon_with(&mut self, i: usize, text: &str) {
        let path = self.dir.join(format!("daemon-{i}.toml"));
        std::fs::write(&path, text).expect("write");
        let p = spawn(
            &format!("d{}", i + 1),
            &bin("legacy-daemon"),
            &[format!("--config={}", path.display())],
            &self.dir.join(format!("daemon-{i}.log")),
        );
        if self.daemons.len() <= i {
            self.daemons.resize_with(i + 1, || None);
        }
        self.daemons[i] = Some(p);
    }

    pub fn kill_daemon(&mut self, i: usize) {
        if let Some(mut p) = self.daemons[i].take() {
            p.kill();
        }
    }

    pub async fn report(&self, k: usize) -> Option<Report> {
        query(self.controls[k]).await.ok()
    }

    /// Polls proxy `k` until `cond` holds; panics (with the logs) after 30 s.
    pub async fn until(&self, k: usize, what: &str, cond: impl Fn(&Report) -> bool) -> Report {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last = None;
        loop {
            if let Some(r) = self.report(k).await {
                if cond(&r) {
                    return r;
                }
                last = Some(r);
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "waiting for {what}: last report {:#?}\n{}",
                    last.map(|r| r.proxy.render_table()),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "log") {
                    let t = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let tail: Vec<&str> = t.lines().rev().take(30).collect();
                    out += &format!("==== {}\n", e.path().display());
                    for l in tail.into_iter().rev() {
                        out += l;
                        out.push('\n');
                    }
                }
            }
        }
        out
    }
}

/// A broker-mode configuration in `dir` (`proxy.toml`, with `d1.key`): one application with
/// one server of daemon `d1`, the registrar absent (the proxy keeps trying); the path and
/// the control port address.
pub fn lone_broker_config(dir: &Path) -> (String, SocketAddr) {
    let control: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    std::fs::write(
        dir.join("d1.key"),
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
    )
    .expect("key");
    // Each proxy its own control socket and state file (the defaults under /run and
    // /var/lib are one per host: a second proxy would refuse to start).
    let sock = dir.join("control.sock").display().to_string();
    let state = dir.join("admin-state.json").display().to_string();
    let text = format!(
        "mode = \"broker\"\nregistrar_transport = \"tcp\"\ndaemon_listen = \"127.0.0.1:{}\"\n\
         control_listen = \"{control}\"\nregistrars = [\"127.0.0.1:{}\"]\n\
         control_socket = \"{sock}\"\nadmin_state_file = \"{state}\"\n\n\
         [[application]]\nname = \"echo\"\npool_handle = \"EchoPool\"\npolicy = \"round-robin\"\n\
         listen = \"127.0.0.1:{}\"\n\n[[application.server]]\nname = \"S1\"\naddress = \"127.0.0.1\"\n\
         port = {}\ndaemon = \"d1\"\n\n[[daemon]]\nid = \"d1\"\nkey_file = \"d1.key\"\n",
        free_port(),
        free_port(),
        free_port(),
        free_port()
    );
    let path = dir.join("proxy.toml");
    std::fs::write(&path, text).expect("write config");
    (path.display().to_string(), control)
}

/// All three servers selectable and the registrar accepted the registrations.
pub fn all_selectable(r: &Report) -> bool {
    r.proxy.applications[0].servers.iter().all(|s| s.selectable)
}

/// No server of the first application is selectable (all down, stopped or unknown).
pub fn none_selectable(r: &Report) -> bool {
    r.proxy.applications[0]
        .servers
        .iter()
        .all(|s| !s.selectable)
}

pub fn server<'a>(r: &'a Report, name: &str) -> &'a proxy_pe::core::ServerView {
    r.proxy.applications[0]
        .servers
        .iter()
        .find(|s| s.name == name)
        .expect("server in table")
}

/// A PU: handle resolution at the registrar (ASAP over TCP); returns the PEs' TCP
/// addresses.
pub async fn resolve(registrar: SocketAddr, handle: &str) -> Vec<SocketAddr> {
    let mut a = Transport::new(TransportConfig::asap(TransportKind::Tcp))
        .connect(&[registrar], &[])
        .await
        .expect("connect registrar");
    let m: Message = HandleResolution::new(handle).into();
    a.send(&Msg::new(
        m.protocol().ppid(),
        0,
        m.to_bytes().expect("enc"),
    ))
    .await
    .expect("send");
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), a.recv())
            .await
            .expect("answer")
            .expect("alive");
        if let Event::Message(m) = ev {
            let d = Message::decode(Protocol::Asap, &m.bytes).expect("decode");
            if let Message::Asap(AsapMessage::HandleResolutionResponse(r)) = d.message {
                let _ = a.close().await;
                return tcp_users(&r);
            }
        }
    }
}

/// Resolves until the PE set satisfies `cond`.
pub async fn resolve_until(
    registrar: SocketAddr,
    handle: &str,
    cond: impl Fn(&[SocketAddr]) -> bool,
) -> Vec<SocketAddr> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = resolve(registrar, handle).await;
        if cond(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "resolution never satisfied the condition; last {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client session: the greeting line names the serving legacy server.
pub struct Session {
    pub r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    pub w: tokio::net::tcp::OwnedWriteHalf,
}

impl Session {
    pub async fn open(addr: SocketAddr) -> Session {
        let s = TcpStream::connect(addr).await.expect("connect");
        let (r, w) = s.into_split();
        Session {
            r: BufReader::new(r),
            w,
        }
    }

    pub async fn line(&mut self) -> String {
        let mut l = String::new();
        tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut l))
            .await
            .expect("line within 20 s")
            .expect("read");
        l.trim_end().to_string()
    }

    /// Reads the greeting and returns the server tag ("IP1", ...).
    pub async fn server(&mut self) -> String {
        let l = self.line().await;
        l.strip_prefix("hello from ")
            .unwrap_or_else(|| panic!("not a greeting: {l:?}"))
            .to_string()
    }

    pub async fn echo(&mut self, text: &str) -> String {
        self.w
            .write_all(format!("{text}\n").as_bytes())
            .await
            .expect("write");
        self.line().await
    }

    pub async fn close(mut self) {
        let _ = self.w.shutdown().await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.r.read_to_end(&mut rest)).await;
    }
}

/// Opens a session through `addr` and returns it with the serving server's tag.
pub async fn session(addr: SocketAddr) -> (Session, String) {
    let mut s = Session::open(addr).await;
    let who = s.server().await;
    (s, who)
}
