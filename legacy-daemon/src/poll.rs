//! Process-table polling (seed 003 [29] step 181: "Daemon 141 polls process table 155 to
//! establish the status of the applications"; SEEDS.md §1.3 C3).
//!
//! One pass over `/proc` (via the `procfs` crate) per poll, whatever the number of
//! configured applications: for each process `stat` is read once (comm, state, CPU ticks,
//! RSS); the command line and the `exe` link are read only when an application's matcher
//! needs them. `/proc/net/tcp` and `/proc/net/tcp6` are read once per poll, and only when
//! some application lists service ports.
//!
//! Matching rules (all criteria given for an application must hold):
//! - `exe`: `comm` equals the name (the kernel truncates `comm` to 15 bytes), or the base
//!   name of `/proc/PID/exe` equals it;
//! - `cmdline`: the regex matches the arguments joined by single spaces;
//! - `pid_file`: the pid is the one written in the file.
//!
//! Zombies (state `Z`/`X`) never count: an exited but not yet reaped server does not serve.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use crate::config::{AppSpec, Config};
use crate::protocol::{AppStatus, PortStatus};

/// Keeps the CPU counters of the previous poll so CPU use is reported "since last poll".
#[derive(Debug)]
pub struct Poller {
    prev_ticks: HashMap<(i32, u64), u64>,
    prev_at: Option<Instant>,
    ticks_per_sec: f64,
    page_size: u64,
    self_pid: i32,
}

impl Default for Poller {
    fn default() -> Self {
        Self::new()
    }
}

/// What one process looks like to the matcher (gathered lazily).
struct Proc {
    pid: i32,
    comm: String,
    cmdline: Option<String>,
    exe_name: Option<Option<String>>,
}

impl Poller {
    /// A poller with no history (the first poll reports 0 % CPU).
    pub fn new() -> Self {
        Self {
            prev_ticks: HashMap::new(),
            prev_at: None,
            ticks_per_sec: procfs::ticks_per_second().max(1) as f64,
            page_size: procfs::page_size().max(1),
            self_pid: std::process::id() as i32,
        }
    }

    /// Polls the process table once and returns the status of every configured
    /// application, in configuration order. Never fails: unreadable processes (vanished,
    /// permission denied) are skipped, an unreadable `/proc` gives "not running".
    pub fn poll(&mut self, cfg: &Config) -> Vec<AppStatus> {
        let now = Instant::now();
        let elapsed = self
            .prev_at
            .map(|t| now.duration_since(t).as_secs_f64())
            .filter(|s| *s > 0.0);

        let pidfile_pids: Vec<Option<i32>> = cfg
            .apps
            .iter()
            .map(|a| a.matcher.pid_file.as_ref().and_then(|p| read_pid_file(p)))
            .collect();

        let mut pids: Vec<Vec<u32>> = vec![Vec::new(); cfg.apps.len()];
        let mut cpu_ticks: Vec<u64> = vec![0; cfg.apps.len()];
        let mut rss: Vec<u64> = vec![0; cfg.apps.len()];
        let mut new_ticks = HashMap::new();

        if !cfg.apps.is_empty() {
            if let Ok(iter) = procfs::process::all_processes() {
                for p in iter.flatten() {
                    if p.pid == self.self_pid {
                        continue;
                    }
                    let Ok(st) = p.stat() else { continue };
                    if st.state == 'Z' || st.state == 'X' {
                        continue;
                    }
                    let mut info = Proc {
                        pid: p.pid,
                        comm: st.comm.clone(),
                        cmdline: None,
                        exe_name: None,
                    };
                    let mut counted = false;
                    for (i, app) in cfg.apps.iter().enumerate() {
                        if !matches(app, pidfile_pids[i], &mut info, &p) {
                            continue;
                        }
                        let ticks = st.utime + st.stime;
                        let key = (p.pid, st.starttime);
                        if let Some(prev) = self.prev_ticks.get(&key) {
                            cpu_ticks[i] += ticks.saturating_sub(*prev);
                        }
                        if !counted {
                            new_ticks.insert(key, ticks);
                            counted = true;
                        }
                        rss[i] += st.rss.saturating_mul(self.page_size);
                        pids[i].push(p.pid as u32);
                    }
                }
            }
        }
        self.prev_ticks = new_ticks;
        self.prev_at = Some(now);

        let net = if cfg.apps.iter().any(|a| !a.ports.is_empty()) {
            Some(NetTable::read())
        } else {
            None
        };

        cfg.apps
            .iter()
            .enumerate()
            .map(|(i, app)| {
                let mut p = std::mem::take(&mut pids[i]);
                p.sort_unstable();
                let ports: Vec<PortStatus> = app
                    .ports
                    .iter()
                    .map(|&port| PortStatus {
                        port,
                        listening: net.as_ref().map(|n| n.listening.contains(&port)),
                        connections: if app.count_connections {
                            net.as_ref()
                                .map(|n| n.established.get(&port).copied().unwrap_or(0))
                        } else {
                            None
                        },
                    })
                    .collect();
                let listen_ok =
                    !app.require_listen || ports.iter().any(|p| p.listening == Some(true));
                let cpu_percent = match elapsed {
                    Some(secs) => {
                        let pct = cpu_ticks[i] as f64 / self.ticks_per_sec / secs * 100.0;
                        // Round to 0.1 % so unchanged load does not look like a change.
                        ((pct * 10.0).round() / 10.0) as f32
                    }
                    None => 0.0,
                };
                AppStatus {
                    name: app.name.clone(),
                    running: !p.is_empty() && listen_ok,
                    instances: p.len() as u32,
                    pids: p,
                    cpu_percent,
                    rss_bytes: rss[i],
                    ports,
                    load_hints: app.load.clone(),
                }
            })
            .collect()
    }
}

fn matches(
    app: &AppSpec,
    pidfile_pid: Option<i32>,
    info: &mut Proc,
    p: &procfs::process::Process,
) -> bool {
    let m = &app.matcher;
    if m.pid_file.is_some() && pidfile_pid != Some(info.pid) {
        return false;
    }
    if let Some(exe) = &m.exe {
        let truncated: String = exe.chars().take(15).collect();
        let comm_ok = if exe.len() <= 15 {
            info.comm == *exe
        } else {
            info.comm == truncated
        };
        // comm alone is conclusive only for names the kernel did not truncate.
        let ok = (comm_ok && exe.len() <= 15) || {
            let name = info.exe_name.get_or_insert_with(|| {
                p.exe()
                    .ok()
                    .and_then(|path| path.file_name().map(|n| n.to_string_lossy().into_owned()))
            });
            name.as_deref() == Some(exe.as_str())
        };
        if !ok {
            return false;
        }
    }
    if let Some(re) = &m.cmdline {
        let line = info
            .cmdline
            .get_or_insert_with(|| p.cmdline().map(|v| v.join(" ")).unwrap_or_default());
        if line.is_empty() || !re.is_match(line) {
            return false;
        }
    }
    true
}

/// Reads a pid file: the first whitespace-separated token as a positive pid.
fn read_pid_file(path: &std::path::Path) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.split_whitespace()
        .next()?
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
}

/// Listening ports and ESTABLISHED connection counts per local port, from
/// `/proc/net/tcp` and `/proc/net/tcp6` of the daemon's network namespace.
#[derive(Debug, Default)]
pub struct NetTable {
    /// Local ports with a socket in LISTEN state.
    pub listening: HashSet<u16>,
    /// ESTABLISHED sockets per local port.
    pub established: HashMap<u16, u32>,
}

impl NetTable {
    /// Reads both tables; a missing table (no IPv6) counts as empty.
    pub fn read() -> Self {
        let mut t = NetTable::default();
        let v4 = procfs::net::tcp().unwrap_or_default();
        let v6 = procfs::net::tcp6().unwrap_or_default();
        for e in v4.iter().chain(v6.iter()) {
            let port = e.local_address.port();
            match e.state {
                procfs::net::TcpState::Listen => {
                    t.listening.insert(port);
                }
                procfs::net::TcpState::Established => {
                    *t.established.entry(port).or_insert(0) += 1;
                }
                _ => {}
            }
        }
        t
    }
}
