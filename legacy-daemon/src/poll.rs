//! Process-table polling (seed 003 \[29\] step 181: "Daemon 141 polls process table 155 to
//! establish the status of the applications"; SEEDS.md §1.3 C3).
//!
//! One pass over `/proc` per poll, whatever the number of configured applications: for
//! each process `/proc/PID/stat` is read once into a reused buffer and parsed with the
//! `procfs` crate's `Stat` (comm, state, CPU ticks, RSS); the command line and the `exe`
//! link are read only when an application's matcher needs them, at most once per process.
//! Command lines are cached per (pid, start time) and re-read when `comm` changes (exec)
//! or after [`CMDLINE_REFRESH_POLLS`] polls (argv rewritten in place), so the steady-state
//! cost is one `stat` read per process.
//! (`procfs::process::all_processes()` would open an extra `O_PATH` fd per process; the
//! kernel's generation of `stat` dominates the cost either way, see BENCHMARKS.md.)
//!
//! `/proc/net/tcp` and `/proc/net/tcp6` are read only when some application lists service
//! ports, and then at most every `net_interval` (default 5 s) unless the process set of such
//! an application changed: walking the kernel's TCP hash tables costs ~9 ms on a 24 GiB
//! host even with 4 sockets (BENCHMARKS.md).
//!
//! Matching rules (all criteria given for an application must hold):
//! - `exe`: `comm` equals the name. The kernel keeps only 15 bytes of `comm`, so a longer
//!   name must also equal the base name of `/proc/PID/exe`. (Scripts run through an
//!   interpreter have the script name in `comm`; match interpreters with `cmdline`.)
//! - `cmdline`: the regex matches the arguments joined by single spaces;
//! - `pid_file`: the pid is the one written in the file.
//!
//! Zombies (state `Z`/`X`) never count: an exited but not yet reaped server does not serve.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use procfs::FromRead;

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
    polls: u64,
    cmd_cache: HashMap<(i32, u64), CachedCmdline>,
    net: Option<(Instant, NetTable)>,
    /// Pids of the applications with ports at the previous poll (name, pids).
    port_app_pids: Vec<(String, Vec<u32>)>,
}

/// A command line read in an earlier poll.
#[derive(Debug)]
struct CachedCmdline {
    comm: String,
    cmdline: String,
    read_at_poll: u64,
}

/// A cached command line is re-read after this many polls, to notice programs that
/// rewrite their argv (setproctitle) without exec'ing.
pub const CMDLINE_REFRESH_POLLS: u64 = 30;

/// Command-line cache lookups for one poll: entries are moved from `old` to `new` when the
/// process is seen again, so vanished processes drop out after one poll.
struct CmdCache<'a> {
    old: &'a mut HashMap<(i32, u64), CachedCmdline>,
    new: HashMap<(i32, u64), CachedCmdline>,
    poll: u64,
}

impl CmdCache<'_> {
    /// The command line of process `key`, from the cache if it is fresh and the process has
    /// not exec'd since (same `comm`), else read from `/proc/PID/cmdline`.
    fn get(&mut self, key: (i32, u64), comm: &str, buf: &mut Vec<u8>) -> String {
        if let Some(e) = self.new.get(&key) {
            return e.cmdline.clone();
        }
        if let Some(e) = self.old.remove(&key) {
            if e.comm == comm && self.poll.saturating_sub(e.read_at_poll) < CMDLINE_REFRESH_POLLS {
                let line = e.cmdline.clone();
                self.new.insert(key, e);
                return line;
            }
        }
        buf.clear();
        let line = if read_proc_file(key.0, "cmdline", buf).is_ok() {
            let args: Vec<&[u8]> = buf.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
            String::from_utf8_lossy(&args.join(&b' ')).into_owned()
        } else {
            String::new()
        };
        self.new.insert(
            key,
            CachedCmdline {
                comm: comm.to_string(),
                cmdline: line.clone(),
                read_at_poll: self.poll,
            },
        );
        line
    }
}

impl Default for Poller {
    fn default() -> Self {
        Self::new()
    }
}

/// What one process looks like to the matcher (gathered lazily).
struct Proc {
    pid: i32,
    starttime: u64,
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
            polls: 0,
            cmd_cache: HashMap::new(),
            net: None,
            port_app_pids: Vec::new(),
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

        self.polls += 1;
        let mut cache = CmdCache {
            old: &mut self.cmd_cache,
            new: HashMap::new(),
            poll: self.polls,
        };
        if !cfg.apps.is_empty() {
            if let Ok(dir) = std::fs::read_dir("/proc") {
                let mut buf: Vec<u8> = Vec::with_capacity(1024);
                for ent in dir.flatten() {
                    let name = ent.file_name();
                    let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
                        continue;
                    };
                    if pid == self.self_pid {
                        continue;
                    }
                    buf.clear();
                    if read_proc_file(pid, "stat", &mut buf).is_err() {
                        continue; // vanished meanwhile
                    }
                    let Ok(st) = procfs::process::Stat::from_read(buf.as_slice()) else {
                        continue;
                    };
                    if st.state == 'Z' || st.state == 'X' {
                        continue;
                    }
                    let mut info = Proc {
                        pid,
                        starttime: st.starttime,
                        comm: st.comm,
                        cmdline: None,
                        exe_name: None,
                    };
                    let mut counted = false;
                    for (i, app) in cfg.apps.iter().enumerate() {
                        if !matches(app, pidfile_pids[i], &mut info, &mut cache, &mut buf) {
                            continue;
                        }
                        let ticks = st.utime + st.stime;
                        let key = (pid, st.starttime);
                        if let Some(prev) = self.prev_ticks.get(&key) {
                            cpu_ticks[i] += ticks.saturating_sub(*prev);
                        }
                        if !counted {
                            new_ticks.insert(key, ticks);
                            counted = true;
                        }
                        rss[i] += st.rss.saturating_mul(self.page_size);
                        pids[i].push(pid as u32);
                    }
                }
            }
        }
        self.cmd_cache = cache.new;
        self.prev_ticks = new_ticks;
        self.prev_at = Some(now);

        for p in pids.iter_mut() {
            p.sort_unstable();
        }
        let port_app_pids: Vec<(String, Vec<u32>)> = cfg
            .apps
            .iter()
            .zip(&pids)
            .filter(|(a, _)| !a.ports.is_empty())
            .map(|(a, p)| (a.name.clone(), p.clone()))
            .collect();
        let net = if port_app_pids.is_empty() {
            self.net = None;
            None
        } else {
            let fresh = self.net.as_ref().is_some_and(|(at, _)| {
                now.duration_since(*at) < cfg.daemon.net_interval
                    && port_app_pids == self.port_app_pids
            });
            if !fresh {
                self.net = Some((now, NetTable::read()));
            }
            self.net.as_ref().map(|(_, t)| t)
        };
        self.port_app_pids = port_app_pids;

        cfg.apps
            .iter()
            .enumerate()
            .map(|(i, app)| {
                let p = std::mem::take(&mut pids[i]);
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
    cache: &mut CmdCache<'_>,
    buf: &mut Vec<u8>,
) -> bool {
    let m = &app.matcher;
    if m.pid_file.is_some() && pidfile_pid != Some(info.pid) {
        return false;
    }
    if let Some(exe) = &m.exe {
        if exe.len() <= COMM_LEN {
            if info.comm != *exe {
                return false;
            }
        } else {
            // comm holds only the first 15 bytes: confirm with the exe link.
            if !exe.as_bytes().starts_with(info.comm.as_bytes()) || info.comm.len() != COMM_LEN {
                return false;
            }
            let pid = info.pid;
            let name = info.exe_name.get_or_insert_with(|| {
                std::fs::read_link(format!("/proc/{pid}/exe"))
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            });
            if name.as_deref() != Some(exe.as_str()) {
                return false;
            }
        }
    }
    if let Some(re) = &m.cmdline {
        let key = (info.pid, info.starttime);
        let line = match &info.cmdline {
            Some(l) => l,
            None => {
                let l = cache.get(key, &info.comm, buf);
                info.cmdline.insert(l)
            }
        };
        if line.is_empty() || !re.is_match(line) {
            return false;
        }
    }
    true
}

/// Length of `comm` in the kernel (TASK_COMM_LEN - 1).
const COMM_LEN: usize = 15;

/// Reads `/proc/PID/NAME` into `buf` (appending).
fn read_proc_file(pid: i32, name: &str, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(format!("/proc/{pid}/{name}"))?;
    f.read_to_end(buf)?;
    Ok(())
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
