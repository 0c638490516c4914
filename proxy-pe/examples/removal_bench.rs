//! Removal benchmark: time from a legacy application's death to its removal from the
//! pool, in mode A (registration proxy) and mode B (session broker).
//!
//! ```text
//! cargo build --release -p enrp-server -p legacy-daemon -p proxy-pe
//! cargo run --release -p proxy-pe --example removal_bench -- \
//!     [--runs 20] [--poll-ms 1000,200] [--modes a,b] [--pidfd on,off] [--bin-dir DIR]
//! ```
//!
//! Everything is a real process on loopback over TCP: our `enrp-server` (registrar,
//! 127.0.0.1), `proxy-pe`, two `legacy-echo` servers (the victim IP1 on 127.0.0.11, the
//! survivor IP2 on 127.0.0.12) and one `legacy-daemon` per server with the given poll
//! interval. Each run waits a random time within one poll interval (so the kill falls at
//! a random phase of the daemon's poll), then SIGKILLs the victim and measures, from just
//! before `kill(2)`:
//!
//! - **proxy**: until the proxy's pooling table (control port, polled every 2 ms) shows
//!   the victim not selectable. In mode B this is the moment the proxy stops selecting
//!   it for new sessions.
//! - **registrar** (mode A): until a HANDLE_RESOLUTION at the registrar (one TCP
//!   association, a request every 2 ms) no longer lists the victim's address, i.e. the
//!   proxy's DEREGISTRATION has been applied.
//!
//! After each measurement, mode B also checks that two new sessions through the proxy
//! both land on the survivor. The victim is then restarted and the next run waits until
//! it is selectable (mode A: listed by the registrar) again.
//!
//! `--pidfd off` runs the daemons under a seccomp filter that makes `pidfd_open(2)` fail
//! with ENOSYS, as on kernels older than 5.3: the daemon then notices an exit only at its
//! next poll. The default `on` is the normal path, where the exit wakes the daemon at
//! once.
//!
//! The binaries are taken from the directory of this example's parent (`target/release`
//! for `--release`), or from `--bin-dir`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use asap::transport::{Association, Event, Msg, Transport, TransportConfig, TransportKind};
use asap::wire::asap_msg::HandleResolution;
use asap::wire::{AsapMessage, Message, Protocol};
use clap::Parser;
use proxy_pe::control::{query, Report};
use rserpool_tests::registrar::tcp_users;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "removal_bench")]
struct Args {
    /// Kills (measurements) per configuration.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Daemon poll intervals to measure, ms.
    #[arg(long, value_delimiter = ',', default_value = "1000,200")]
    poll_ms: Vec<u64>,
    /// Modes: `a` (registration proxy) and/or `b` (session broker).
    #[arg(long, value_delimiter = ',', default_value = "a,b")]
    modes: Vec<String>,
    /// pidfd exit notification in the daemon: `on` (normal), `off` (seccomp: ENOSYS).
    #[arg(long, value_delimiter = ',', default_value = "on,off")]
    pidfd: Vec<String>,
    /// Directory holding enrp-server, legacy-daemon, proxy-pe and legacy-echo.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Keep the logs (and print each kill's wall-clock time, to line up with the daemon's
    /// and the proxy's log timestamps).
    #[arg(long)]
    keep: bool,
}

/// A child process, SIGKILLed on drop (and when this process dies).
struct Proc(Child);

impl Proc {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A BPF instruction (`struct sock_filter`).
#[repr(C)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// Installs a seccomp filter that fails `pidfd_open(2)` with ENOSYS. Called in the child
/// between fork and exec: it only uses async-signal-safe system calls.
fn deny_pidfd_open() -> std::io::Result<()> {
    const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
    const BPF_JEQ_K: u16 = 0x15; // BPF_JMP (5) | BPF_JEQ (0x10) | BPF_K (0)
    const BPF_RET_K: u16 = 0x06; // BPF_RET (6) | BPF_K (0)
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let prog = [
        // seccomp_data.nr is at offset 0.
        SockFilter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        SockFilter {
            code: BPF_JEQ_K,
            jt: 0,
            jf: 1,
            k: libc::SYS_pidfd_open as u32,
        },
        SockFilter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
        SockFilter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        },
    ];
    let fprog = SockFprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS / PR_SET_SECCOMP only changes this process;
    // `fprog` points at a valid filter that outlives the call (the kernel copies it).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const SockFprog,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn spawn(program: &Path, args: &[String], log: &Path, no_pidfd: bool) -> Proc {
    use std::os::unix::process::CommandExt;
    let log_f = std::fs::File::create(log).expect("log file");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log_f.try_clone().expect("clone"))
        .stderr(log_f);
    // SAFETY: prctl and the seccomp setup are async-signal-safe and only change the
    // child's own settings.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if no_pidfd {
                deny_pidfd_open()?;
            }
            Ok(())
        })
    };
    Proc(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display())),
    )
}

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind(format!("{ip}:0"))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One HANDLE_RESOLUTION per call on a kept association (RFC 5351 §2.2.3, §3.1).
struct Resolver {
    assoc: Association,
    handle: String,
}

impl Resolver {
    async fn connect(registrar: SocketAddr, handle: &str) -> Resolver {
        let assoc = Transport::new(TransportConfig::asap(TransportKind::Tcp))
            .connect(&[registrar], &[])
            .await
            .expect("connect registrar");
        Resolver {
            assoc,
            handle: handle.into(),
        }
    }

    /// The pool's PE addresses (TCP user transports).
    async fn resolve(&mut self) -> Vec<SocketAddr> {
        let m: Message = HandleResolution::new(self.handle.as_str()).into();
        self.assoc
            .send(&Msg::new(
                m.protocol().ppid(),
                0,
                m.to_bytes().expect("encode"),
            ))
            .await
            .expect("send");
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), self.assoc.recv())
                .await
                .expect("answer within 10 s")
                .expect("association alive");
            let Event::Message(m) = ev else { continue };
            let Ok(d) = Message::decode(Protocol::Asap, &m.bytes) else {
                continue;
            };
            if let Message::Asap(AsapMessage::HandleResolutionResponse(r)) = d.message {
                return tcp_users(&r);
            }
        }
    }
}

/// The running rig of one configuration.
struct Rig {
    dir: PathBuf,
    bins: PathBuf,
    echo_addrs: [SocketAddr; 2],
    echoes: [Option<Proc>; 2],
    control: SocketAddr,
    listen: SocketAddr,
    registrar: SocketAddr,
    _procs: Vec<Proc>,
}

impl Rig {
    fn start(bins: &Path, mode: char, poll_ms: u64, no_pidfd: bool) -> Rig {
        let dir = std::env::temp_dir().join(format!(
            "removal-bench-{}-{mode}-{poll_ms}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let rp = free_port("127.0.0.1");
        let registrar: SocketAddr = format!("127.0.0.1:{rp}").parse().expect("a");
        let mut procs = vec![spawn(
            &bins.join("enrp-server"),
            &[
                format!("--asap={registrar}"),
                "--enrp=off".into(),
                "--transport=tcp".into(),
                "--asap-announce=off".into(),
                "--enrp-announce=off".into(),
                "--allow-third-party=127.0.0.0/8".into(),
                "--min-address-scope=loopback".into(),
            ],
            &dir.join("enrp-server.log"),
            false,
        )];
        let echo_addrs: [SocketAddr; 2] = [
            format!("127.0.0.11:{}", free_port("127.0.0.11"))
                .parse()
                .expect("a"),
            format!("127.0.0.12:{}", free_port("127.0.0.12"))
                .parse()
                .expect("a"),
        ];
        let daemon_port = free_port("127.0.0.1");
        let control: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
            .parse()
            .expect("a");
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
            .parse()
            .expect("a");
        let mode_s = if mode == 'a' {
            "registration"
        } else {
            "broker"
        };
        let mut cfg = format!(
            "mode = \"{mode_s}\"\nregistrar_transport = \"tcp\"\n\
             daemon_listen = \"127.0.0.1:{daemon_port}\"\ncontrol_listen = \"{control}\"\n\
             control_socket = \"ctl/control.sock\"\nadmin_state_file = \"admin-state.json\"\n\
             registrars = [\"{registrar}\"]\n\n\
             [[application]]\nname = \"echo\"\npool_handle = \"BenchPool\"\n\
             policy = \"round-robin\"\n"
        );
        if mode == 'b' {
            cfg += &format!("listen = \"{listen}\"\n");
        }
        for (i, a) in echo_addrs.iter().enumerate() {
            cfg += &format!(
                "\n[[application.server]]\nname = \"IP{}\"\naddress = \"{}\"\nport = {}\n\
                 daemon = \"d{}\"\n",
                i + 1,
                a.ip(),
                a.port(),
                i + 1
            );
        }
        let cfg_path = dir.join("proxy.toml");
        std::fs::write(&cfg_path, cfg).expect("write");
        procs.push(spawn(
            &bins.join("proxy-pe"),
            &["run".into(), format!("--config={}", cfg_path.display())],
            &dir.join("proxy.log"),
            false,
        ));
        for (i, a) in echo_addrs.iter().enumerate() {
            let re = format!("--listen={a}").replace('.', "\\.");
            let d = format!(
                "[daemon]\nid = \"d{}\"\npoll_interval_ms = {poll_ms}\n\n\
                 [[proxy]]\naddress = \"127.0.0.1:{daemon_port}\"\nreconnect_max_ms = 500\n\n\
                 [[app]]\nname = \"echo\"\nexe = \"legacy-echo\"\ncmdline = '{re}'\n\
                 ports = [{}]\nrequire_listen = true\n",
                i + 1,
                a.port()
            );
            let p = dir.join(format!("daemon-{i}.toml"));
            std::fs::write(&p, d).expect("write");
            procs.push(spawn(
                &bins.join("legacy-daemon"),
                &[format!("--config={}", p.display())],
                &dir.join(format!("daemon-{i}.log")),
                no_pidfd,
            ));
        }
        let mut rig = Rig {
            dir,
            bins: bins.to_path_buf(),
            echo_addrs,
            echoes: [None, None],
            control,
            listen,
            registrar,
            _procs: procs,
        };
        rig.start_echo(0);
        rig.start_echo(1);
        rig
    }

    fn start_echo(&mut self, i: usize) {
        self.echoes[i] = Some(spawn(
            &self.bins.join("legacy-echo"),
            &[
                format!("--listen={}", self.echo_addrs[i]),
                format!("--tag=IP{}", i + 1),
            ],
            &self.dir.join(format!("echo-{i}.log")),
            false,
        ));
    }

    async fn report(&self) -> Option<Report> {
        query(self.control).await.ok()
    }

    async fn selectable(&self, name: &str) -> Option<bool> {
        let r = self.report().await?;
        r.proxy
            .applications
            .first()?
            .servers
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.selectable)
    }

    /// Polls until `cond` holds; panics with the log directory after 60 s.
    async fn until<F, Fut>(&self, what: &str, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond().await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; logs in {}",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Opens a plain session through the proxy and returns the serving server's tag.
async fn session_server(addr: SocketAddr) -> String {
    let s = TcpStream::connect(addr).await.expect("connect proxy");
    let mut r = BufReader::new(s);
    let mut l = String::new();
    tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut l))
        .await
        .expect("greeting within 10 s")
        .expect("read");
    l.trim_end()
        .strip_prefix("hello from ")
        .unwrap_or(l.trim_end())
        .to_string()
}

/// min, median, max of a sample (ms).
fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// A small xorshift generator for the kill phase (no extra dependency).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// One configuration: returns (proxy ms, registrar ms) per run.
async fn measure(
    bins: &Path,
    mode: char,
    poll_ms: u64,
    no_pidfd: bool,
    runs: usize,
    keep: bool,
    rng: &mut Rng,
) -> (Vec<f64>, Vec<f64>) {
    let mut rig = Rig::start(bins, mode, poll_ms, no_pidfd);
    let victim = rig.echo_addrs[0];
    rig.until("both servers selectable", || async {
        rig.selectable("IP1").await == Some(true) && rig.selectable("IP2").await == Some(true)
    })
    .await;
    let mut resolver = None;
    if mode == 'a' {
        let mut res = Resolver::connect(rig.registrar, "BenchPool").await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while res.resolve().await.len() != 2 {
            assert!(Instant::now() < deadline, "both PEs never registered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        resolver = Some(res);
    }
    let mut proxy_ms = Vec::new();
    let mut registrar_ms = Vec::new();
    for run in 0..runs {
        tokio::time::sleep(Duration::from_millis(100 + rng.below(poll_ms))).await;
        let t0 = Instant::now();
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        if let Some(mut p) = rig.echoes[0].take() {
            p.kill();
        }
        // Proxy table and registrar handlespace are watched concurrently.
        let proxy_watch = async {
            loop {
                if rig.selectable("IP1").await == Some(false) {
                    return t0.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        let registrar_watch = async {
            match resolver.as_mut() {
                None => None,
                Some(res) => loop {
                    if !res.resolve().await.contains(&victim) {
                        return Some(t0.elapsed());
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                },
            }
        };
        let (p, r) = tokio::time::timeout(Duration::from_secs(60), async {
            tokio::join!(proxy_watch, registrar_watch)
        })
        .await
        .unwrap_or_else(|_| panic!("removal not seen in 60 s; logs in {}", rig.dir.display()));
        proxy_ms.push(p.as_secs_f64() * 1e3);
        if let Some(r) = r {
            registrar_ms.push(r.as_secs_f64() * 1e3);
        }
        if mode == 'b' {
            for _ in 0..2 {
                let who = session_server(rig.listen).await;
                assert_eq!(who, "IP2", "new session after removal not on the survivor");
            }
        }
        eprintln!(
            "  run {:2}{}: proxy {:8.1} ms{}",
            run + 1,
            if keep {
                format!(
                    " (kill at {}.{:06} s)",
                    wall.as_secs(),
                    wall.subsec_micros()
                )
            } else {
                String::new()
            },
            p.as_secs_f64() * 1e3,
            r.map(|r| format!("  registrar {:8.1} ms", r.as_secs_f64() * 1e3))
                .unwrap_or_default()
        );
        // Back to the start state.
        rig.start_echo(0);
        rig.until("victim selectable again", || async {
            rig.selectable("IP1").await == Some(true)
        })
        .await;
        if let Some(res) = resolver.as_mut() {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !res.resolve().await.contains(&victim) {
                assert!(Instant::now() < deadline, "victim never re-registered");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    if keep {
        eprintln!("  logs kept in {}", rig.dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&rig.dir);
    }
    (proxy_ms, registrar_ms)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let bins = args.bin_dir.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent()?.parent().map(Path::to_path_buf))
            .expect("target directory")
    });
    for b in ["enrp-server", "legacy-daemon", "proxy-pe", "legacy-echo"] {
        if !bins.join(b).exists() {
            eprintln!(
                "removal_bench: {} missing; run `cargo build --release -p enrp-server \
                 -p legacy-daemon -p proxy-pe` first (or pass --bin-dir)",
                bins.join(b).display()
            );
            std::process::exit(2);
        }
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut rng = Rng(seed);
    let mut rows = Vec::new();
    for mode in &args.modes {
        let m = match mode.as_str() {
            "a" | "A" => 'a',
            "b" | "B" => 'b',
            other => {
                eprintln!("removal_bench: unknown mode `{other}` (a or b)");
                std::process::exit(2);
            }
        };
        for pidfd in &args.pidfd {
            let no_pidfd = pidfd == "off";
            for &poll in &args.poll_ms {
                eprintln!(
                    "mode {}, poll {poll} ms, pidfd {}: {} runs",
                    m.to_ascii_uppercase(),
                    if no_pidfd { "off" } else { "on" },
                    args.runs
                );
                let (mut p, mut r) =
                    measure(&bins, m, poll, no_pidfd, args.runs, args.keep, &mut rng).await;
                let (pmin, pmed, pmax) = stats(&mut p);
                let reg = if r.is_empty() {
                    "—".to_string()
                } else {
                    let (a, b, c) = stats(&mut r);
                    format!("{a:.0} / {b:.0} / {c:.0}")
                };
                rows.push(format!(
                    "| {} | {poll} | {} | {} | {pmin:.0} / {pmed:.0} / {pmax:.0} | {reg} |",
                    m.to_ascii_uppercase(),
                    if no_pidfd { "off (ENOSYS)" } else { "on" },
                    args.runs,
                ));
            }
        }
    }
    println!("| mode | daemon poll ms | pidfd | runs | proxy table: not selectable, ms (min / median / max) | registrar: PE gone, ms (min / median / max) |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
