//! Real registrar processes in network namespaces (needs root and `ip netns`): a lab of `n`
//! namespaces, each with one `enrp-server` process on `eth0` = 10.`net2`.N.(i+1)/24, joined by
//! a Linux bridge in a hub namespace; one veth from the root namespace into the bridge
//! (10.`net2`.N.254) lets the test process (PEs, PUs, hsdump) reach every registrar.
//!
//! ```text
//!  root ns: veth "<prefix><pid>-<k>" .254 ──┐  hub ns "<prefix>-<pid>-<k>-hub":
//!  ns "<prefix>-<pid>-<k>-r0": eth0 .1 ─────┤    bridge br0 (ports up0, p0 … p<n-1>)
//!  ns "<prefix>-<pid>-<k>-r1": eth0 .2 ─────┤
//!  …                                       ┘
//! ```
//!
//! Partitions between registrars are blackhole routes inside their namespaces
//! ([`Lab::cut`]): packets between the two are dropped (existing connections stall, new
//! ones fail), both stay reachable from the root namespace. Or their bridge ports are
//! isolated from each other ([`Lab::isolate`]), or a registrar's link goes down
//! ([`Lab::link`]). ENRP traffic can be captured in the hub namespace
//! ([`Lab::start_capture`], tcpdump on every bridge port, ingress only, so each frame
//! once) and decoded with `rsp-capture` and the codec.
//!
//! [`Lab`]'s drop guard kills the processes and deletes the namespaces (also when an
//! assertion fails; a failed lab keeps the registrar logs). Namespaces left by a killed
//! earlier run (its pid gone) are removed when a lab of the same prefix is built. The
//! registrars run under `setpriv --pdeathsig KILL`, so they die with a killed test.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use asap::wire::{Message, Protocol};

/// ASAP port of every registrar (RFC 5352 §5, well-known 3863).
pub const ASAP_PORT: u16 = 3863;
/// ENRP port of every registrar (RFC 5353 §7, well-known 9901).
pub const ENRP_PORT: u16 = 9901;

/// Extra registrar arguments for tests whose PE host does not answer ASAP keep-alives:
/// keep-alives every 600 s, i.e. never within a test.
pub const KEEP_ALIVES_OFF: [&str; 2] = ["--keep-alive-interval", "600000"];

/// Runs `ip ARGS`; the error carries the command and its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    ip_output(args).map(drop)
}

/// `ip ARGS` whose stdout we want.
pub fn ip_output(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// True when the test runs as root (`Uid:` effective 0): namespaces need it.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Kills the processes still inside namespace `ns` (`ip netns pids`).
pub fn kill_pids_in(ns: &str) {
    if let Ok(pids) = ip_output(&["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
}

/// Removes namespaces named `PREFIX-PID-…` whose creating process PID is gone (a run
/// killed before its drop guard ran), with what still runs inside them.
pub fn remove_stale_namespaces(prefix: &str) {
    let Ok(list) = ip_output(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            kill_pids_in(name);
            let _ = ip(&["netns", "del", name]);
        }
    }
}

fn has_setpriv() -> bool {
    Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The namespaces, links and processes of one lab; dropping it removes them all.
pub struct Lab {
    hub: String,
    regs: Vec<String>,
    root_if: String,
    net2: u8,
    /// Third octet of the lab's 10.`net2`.N.0/24.
    pub net: u8,
    children: Vec<Option<Child>>,
    /// Registrar `i`'s log file (stdout and stderr; appended across restarts).
    pub logs: Vec<PathBuf>,
    capture: Option<(Child, PathBuf)>,
    /// Captures taken (removed with the logs).
    pcaps: Vec<PathBuf>,
    /// Set when the scenario passed: the logs are removed with the lab.
    pub passed: bool,
}

impl Lab {
    /// Builds a lab of `n` registrar namespaces in 10.`net2`.N.0/24 (N free on this host),
    /// logs under `log_dir`; `Err` says why it cannot (starts with `FAILED` when namespaces
    /// work but the topology could not be built).
    pub fn new(prefix: &str, net2: u8, n: usize, log_dir: &Path) -> Result<Lab, String> {
        if !is_root() {
            return Err("not root (network namespaces need CAP_SYS_ADMIN)".into());
        }
        ip(&["netns", "list"]).map_err(|e| format!("`ip netns` unavailable: {e}"))?;
        static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
        static LABS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let _serial = BUILD.lock().unwrap_or_else(|p| p.into_inner());
        remove_stale_namespaces(prefix);
        let pid = std::process::id();
        let k = LABS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 10;
        let mut net = None;
        for j in 0..250u32 {
            let n = ((pid * 3 + k + j) % 250 + 1) as u8;
            let p = format!("10.{net2}.{n}.0/24");
            let routed = ip_output(&["-4", "route", "show", "table", "all", "to", "match", &p])
                .map(|r| r.lines().any(|l| l.starts_with("10.")))
                .unwrap_or(true);
            let addressed = ip_output(&["-4", "-o", "addr", "show", "to", &p])
                .map(|r| !r.trim().is_empty())
                .unwrap_or(true);
            if !routed && !addressed {
                net = Some(n);
                break;
            }
        }
        let net = net.ok_or(format!("no free 10.{net2}.N.0/24"))?;
        let mut lab = Lab {
            hub: format!("{prefix}-{pid}-{k}-hub"),
            regs: (0..n).map(|i| format!("{prefix}-{pid}-{k}-r{i}")).collect(),
            root_if: format!("{prefix}{pid}-{k}"),
            net2,
            net,
            children: (0..n).map(|_| None).collect(),
            logs: (0..n)
                .map(|i| log_dir.join(format!("{prefix}-{pid}-{k}-r{i}.log")))
                .collect(),
            capture: None,
            pcaps: Vec::new(),
            passed: false,
        };
        ip(&["netns", "add", &lab.hub]).map_err(|e| format!("cannot create a namespace: {e}"))?;
        lab.build()
            .map_err(|e| format!("FAILED to build the topology: {e}"))?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), String> {
        let hub = self.hub.as_str();
        ip(&["-n", hub, "link", "set", "lo", "up"])?;
        ip(&["-n", hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", hub, "link", "set", "br0", "up"])?;
        ip(&[
            "link",
            "add",
            &self.root_if,
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            hub,
        ])?;
        ip(&["-n", hub, "link", "set", "up0", "master", "br0"])?;
        ip(&["-n", hub, "link", "set", "up0", "up"])?;
        let root_addr = format!("{}/24", self.root_ip());
        ip(&["addr", "add", &root_addr, "dev", &self.root_if])?;
        ip(&["link", "set", &self.root_if, "up"])?;
        for i in 0..self.regs.len() {
            let ns = self.regs[i].clone();
            let port = format!("p{i}");
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", hub, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", hub, "link", "set", &port, "up"])?;
            let addr = format!("{}/24", self.reg_ip(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// Number of registrar namespaces.
    pub fn len(&self) -> usize {
        self.regs.len()
    }

    /// Whether the lab has no registrar namespace.
    pub fn is_empty(&self) -> bool {
        self.regs.is_empty()
    }

    /// The root namespace's address in the lab.
    pub fn root_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net2, self.net, 254)
    }

    /// Registrar `i`'s address.
    pub fn reg_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net2, self.net, i as u8 + 1)
    }

    /// Registrar `i`'s ASAP address.
    pub fn asap(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.reg_ip(i).into(), ASAP_PORT)
    }

    /// Registrar `i`'s ENRP address.
    pub fn enrp(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.reg_ip(i).into(), ENRP_PORT)
    }

    /// The usual arguments of registrar `i` with server ID `id`: TCP, static peers = all
    /// other registrars of the lab, no multicast, no announcements, fast peering timers
    /// (heartbeat 200 ms, silence 600 ms, mentor discovery 1 s, takeover expiry 1.5 s),
    /// hsdump allowed from the root namespace. Append more (later ones win).
    pub fn registrar_args(&self, i: usize, id: u32) -> Vec<String> {
        let mut a: Vec<String> = [
            ("--transport", "tcp"),
            ("--asap-announce", "off"),
            ("--enrp-announce", "off"),
            ("--peering", "on"),
            ("--peer-heartbeat-cycle", "200"),
            ("--peer-max-time-last-heard", "600"),
            ("--peer-max-time-no-response", "600"),
            ("--mentor-discovery-timeout", "1000"),
            ("--takeover-expiry-interval", "1500"),
            ("--max-peers", "16"),
        ]
        .iter()
        .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
        .collect();
        a.extend([
            "--asap".into(),
            self.asap(i).to_string(),
            "--enrp".into(),
            self.enrp(i).to_string(),
            "--identifier".into(),
            format!("{id:#x}"),
            "--hsdump-allow".into(),
            self.root_ip().to_string(),
        ]);
        for j in (0..self.len()).filter(|j| *j != i) {
            a.extend(["--peer".into(), self.enrp(j).to_string()]);
        }
        a
    }

    /// Starts registrar `i` = `bin` with [`Lab::registrar_args`] for server ID `ids[i]` and
    /// `extra` in every namespace, then waits (each at most `deadline`) until all listen.
    pub async fn start_registrars(
        &mut self,
        bin: &str,
        ids: &[u32],
        extra: &[&str],
        deadline: Duration,
    ) {
        for (i, id) in ids.iter().enumerate() {
            let mut args = self.registrar_args(i, *id);
            args.extend(extra.iter().map(|a| a.to_string()));
            self.start(i, bin, &args).expect("start registrar");
        }
        for i in 0..ids.len() {
            self.wait_listening(i, deadline).await;
        }
    }

    /// Starts `bin ARGS` in registrar `i`'s namespace, output appended to its log.
    pub fn start(&mut self, i: usize, bin: &str, args: &[String]) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.logs[i])
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.regs[i]]);
        if has_setpriv() {
            cmd.args(["setpriv", "--pdeathsig", "KILL", "--"]);
        }
        let child = cmd
            .arg(bin)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RSERPOOL_LAB_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawn registrar {i}: {e}"))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// Whether registrar `i` was started and not killed.
    pub fn running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    /// SIGKILL to registrar `i` (`ip netns exec` and `setpriv` exec it: the child is it).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Cuts (`on`) or heals the path between registrars `i` and `j`: a blackhole route to
    /// the other in each namespace (both stay reachable from the root namespace).
    pub fn cut(&self, i: usize, j: usize, on: bool) -> Result<(), String> {
        let verb = if on { "add" } else { "del" };
        for (a, b) in [(i, j), (j, i)] {
            let to = format!("{}/32", self.reg_ip(b));
            ip(&["-n", &self.regs[a], "route", verb, "blackhole", &to])?;
        }
        Ok(())
    }

    /// Isolates (`on`) the bridge ports of registrars `regs` from each other, or joins them
    /// again: isolated ports only forward to non-isolated ones, so nothing passes between
    /// them (connections stall) while all stay reachable from the root namespace.
    pub fn isolate(&self, regs: &[usize], on: bool) -> Result<(), String> {
        let v = if on { "on" } else { "off" };
        for i in regs {
            let port = format!("p{i}");
            ip(&[
                "-n",
                &self.hub,
                "link",
                "set",
                "dev",
                &port,
                "type",
                "bridge_slave",
                "isolated",
                v,
            ])?;
        }
        Ok(())
    }

    /// Sets registrar `i`'s `eth0` up or down (down: it is cut off from everything, sends
    /// fail at once, its peers and PEs hear nothing, as when its host crashes).
    pub fn link(&self, i: usize, up: bool) -> Result<(), String> {
        let v = if up { "up" } else { "down" };
        ip(&["-n", &self.regs[i], "link", "set", "eth0", v])
    }

    /// Starts tcpdump in the hub namespace: every TCP segment to or from port `port`
    /// entering the bridge (ingress of each port, so each frame once), written to a pcap
    /// file next to the logs.
    pub fn start_capture(&mut self, port: u16) -> Result<(), String> {
        let file = self.logs[0].with_extension(format!("{port}.pcap"));
        let child = Command::new("ip")
            .args([
                "netns", "exec", &self.hub, "tcpdump", "-i", "any", "-Q", "in",
            ])
            .args(["-U", "-s", "0", "-Z", "root", "-w"])
            .arg(&file)
            .args(["tcp", "port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("tcpdump: {e}"))?;
        self.capture = Some((child, file));
        // tcpdump needs a moment to open the interfaces.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if std::fs::metadata(&self.capture.as_ref().expect("set").1).is_ok_and(|m| m.len() > 0)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    /// Stops the capture and returns every ENRP message it holds, decoded, with its
    /// capture time and sender address (messages that do not decode are skipped).
    pub fn stop_capture(&mut self) -> Result<Vec<(Duration, SocketAddr, Message)>, String> {
        let Some((mut child, file)) = self.capture.take() else {
            return Err("no capture running".into());
        };
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let _ = child.wait();
        let opts = rsp_capture::CaptureOptions {
            allow_truncated: true,
            ..Default::default()
        };
        let cap = rsp_capture::read_capture(&file, &opts).map_err(|e| e.to_string())?;
        self.pcaps.push(file);
        Ok(cap
            .messages
            .into_iter()
            .filter(|m| m.protocol == rsp_capture::Proto::Enrp)
            .filter_map(|m| {
                let d = Message::decode(Protocol::Enrp, &m.bytes).ok()?;
                Some((m.timestamp, m.src, d.message))
            })
            .collect())
    }

    /// The last 15 lines of registrar `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.logs[i]).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(15);
        lines[from..].join("\n")
    }

    /// Polls until registrar `i` accepts TCP on its ASAP and ENRP ports (panics after
    /// `deadline` with its log tail).
    pub async fn wait_listening(&self, i: usize, deadline: Duration) {
        let start = Instant::now();
        for addr in [self.asap(i), self.enrp(i)] {
            loop {
                let c = tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::net::TcpStream::connect(addr),
                )
                .await;
                if matches!(c, Ok(Ok(_))) {
                    break;
                }
                assert!(
                    start.elapsed() < deadline,
                    "registrar {i} not listening on {addr}; log {}:\n{}",
                    self.logs[i].display(),
                    self.log_tail(i)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some((mut c, _)) = self.capture.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for i in 0..self.regs.len() {
            self.kill(i);
        }
        for ns in self.regs.iter().chain(std::iter::once(&self.hub)) {
            kill_pids_in(ns);
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.root_if]);
        if self.passed {
            for l in self.logs.iter().chain(&self.pcaps) {
                let _ = std::fs::remove_file(l);
            }
        } else if let Some(l) = self.logs.first() {
            eprintln!(
                "registrar logs kept: {}",
                l.display()
                    .to_string()
                    .replace("-r0.log", "-r*.log (and captures)")
            );
        }
    }
}

/// A fresh [`Lab`], or `None` after printing `SKIP: <reason>` when namespaces are
/// unavailable (a failure instead with `RSERPOOL_REQUIRE_NETNS=1`, or when building the
/// topology failed).
pub fn lab_or_skip(prefix: &str, net2: u8, n: usize, log_dir: &Path) -> Option<Lab> {
    match Lab::new(prefix, net2, n, log_dir) {
        Ok(l) => Some(l),
        Err(reason) => {
            if std::env::var_os("RSERPOOL_REQUIRE_NETNS").is_some() || reason.starts_with("FAILED")
            {
                panic!("{reason}");
            }
            eprintln!("SKIP: {reason}");
            None
        }
    }
}
