//! Process-table polling (seed 003 \[29\] step 181: "Daemon 141 polls process table 155 to
//! establish the status of the applications").
//!
//! # Cost model
//!
//! Each `/proc/PID/*` file the kernel generates costs several microseconds of system time
//! (on the 2-vCPU reference VM: `stat` ≈ 12 µs, `comm` ≈ 7 µs, `cmdline` ≈ 9 µs per
//! process, `getdents` ≈ 1.5 µs per process; BENCHMARKS.md). Reading any file for every
//! process at every poll would therefore cost 8–14 ms with 1 100 processes. So a poll:
//!
//! 1. lists `/proc` once (`getdents`), which gives each pid and the inode number of its
//!    `/proc/PID` directory;
//! 2. keeps one cache entry per pid: `comm`, start time, and, read lazily when a matcher
//!    needs them, the command line and the `exe` link, plus which applications the process
//!    matches (recomputed only when the entry or the matchers change);
//! 3. reads `/proc/PID/stat` only for a pid it has not seen, for a pid whose directory
//!    inode changed, and for the processes that match an application (CPU ticks, RSS,
//!    zombie state, start time);
//! 4. re-reads `comm` of the other processes in a staggered way to notice an `exec`: every
//!    poll while a process is younger than [`YOUNG_SECS`] (a fork shows its parent's name
//!    until it execs), otherwise once every [`EXEC_RECHECK_POLLS`] polls. Cached command
//!    lines are re-read once every [`CMDLINE_REFRESH_POLLS`] polls (argv rewritten in
//!    place, setproctitle), also staggered by pid.
//!
//! # Pid reuse
//!
//! A pid that exits and is reused gets a new `/proc/PID` inode: the kernel drops the old
//! dentry when the process is reaped and allocates a new inode number for the new process.
//! An inode change therefore makes the poller re-read `stat` and compare the start time
//! (field 22); an entry is kept only if the start time is the same (the dentry was merely
//! evicted). Matching processes have `stat` read at every poll and their start time
//! compared too, so a reused pid is never reported with the old process's identity.
//!
//! `/proc/net/tcp` and `/proc/net/tcp6` are read only when some application lists service
//! ports, and then at most every `net_interval` (default 5 s) unless the process set of such
//! an application changed while it still runs, or such an application runs while one of
//! its ports was not listening at the last sample (a server that opens its port some time
//! after its process starts is then seen at the next poll, issue 19 item 4): walking the kernel's TCP hash tables costs
//! ~9 ms on a 24 GiB host even with 4 sockets (BENCHMARKS.md). The end of an application's
//! last instance triggers no read, so "not running" is reported without that delay.
//!
//! Matching rules (all criteria given for an application must hold):
//! - `exe`: `comm` equals the name. The kernel keeps only 15 bytes of `comm`, so for a
//!   longer name `comm` must equal its first 15 bytes and the name must also equal the base
//!   name of `/proc/PID/exe` or of `argv[0]`. `argv[0]` covers a program started through a
//!   symbolic link (the exe link names the target) and other users' processes when the
//!   exe link is unreadable (it needs `CAP_SYS_PTRACE`); it is read only for these
//!   candidates. A name of at most 15 bytes is decided by `comm` alone: an `argv[0]`
//!   fallback there would mean reading every process's command line (BENCHMARKS.md cost
//!   model). (Scripts run through an interpreter have the script name in `comm`; match
//!   interpreters with `cmdline`.)
//! - `cmdline`: the regex matches the arguments joined by single spaces;
//! - `pid_file`: the pid is the one written in the file (checked at every poll).
//!
//! Zombies (state `Z`/`X`) never count: an exited but not yet reaped server does not serve.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::DirEntryExt;
use std::time::Instant;

use crate::config::{AppSpec, Config};
use legacy_protocol::{AppStatus, PortStatus};

/// A cached command line is re-read after this many polls, to notice programs that
/// rewrite their argv (setproctitle) without exec'ing.
pub const CMDLINE_REFRESH_POLLS: u64 = 30;

/// `comm` of a process that matches no application is re-read once every this many polls
/// (staggered by pid), so an `exec` into a watched program is noticed within this many
/// polls.
pub const EXEC_RECHECK_POLLS: u64 = 10;

/// Processes younger than this many seconds have `comm` (and a cached command line)
/// re-read at every poll: a freshly forked child carries its parent's name until it execs.
pub const YOUNG_SECS: u64 = 2;

/// Keeps the process cache and the CPU counters of the previous poll so CPU use is
/// reported "since last poll".
#[derive(Debug)]
pub struct Poller {
    prev_ticks: HashMap<(i32, u64), u64>,
    prev_at: Option<Instant>,
    ticks_per_sec: f64,
    page_size: u64,
    self_pid: i32,
    polls: u64,
    /// One entry per pid seen at the last poll.
    procs: HashMap<i32, ProcEntry>,
    /// The exe and cmdline criteria the `apps` lists of `procs` were computed for.
    matchers: Vec<(Option<String>, Option<String>)>,
    /// Bumped when `matchers` changes; entries with another generation are re-matched.
    generation: u64,
    /// Reused read buffer.
    buf: Vec<u8>,
    /// [`YOUNG_SECS`] (tests set 0 to exercise the staggered re-check alone).
    young_secs: u64,
    net: Option<(Instant, NetTable)>,
    /// Pids of the applications with ports at the previous poll (name, pids).
    port_app_pids: Vec<(String, Vec<u32>)>,
    /// `/proc/net/tcp{,6}` samples taken so far.
    net_reads: u64,
    /// Wall-clock time of boot, Unix ms (wall clock now minus `CLOCK_BOOTTIME`), taken
    /// once so the start times reported from it do not jitter from poll to poll.
    boot_epoch_ms: Option<u64>,
}

/// What the poller remembers about one process.
#[derive(Debug)]
struct ProcEntry {
    /// Inode number of `/proc/PID` when the entry was last confirmed.
    ino: u64,
    /// Start time in clock ticks after boot (`stat` field 22).
    starttime: u64,
    comm: String,
    /// State `Z` or `X` seen: the process never runs again.
    zombie: bool,
    /// Arguments joined by single spaces; read only when a `cmdline` matcher needs it.
    cmdline: Option<String>,
    /// Base name of `/proc/PID/exe`; read only for `exe` names longer than `comm`.
    exe_name: Option<Option<String>>,
    /// Base name of `argv[0]`; read only for `exe` names longer than `comm` that the exe
    /// link does not confirm.
    argv0_name: Option<Option<String>>,
    /// Indices of the applications whose `exe` and `cmdline` criteria hold.
    apps: Vec<usize>,
    /// The matcher generation `apps` was computed for (0: stale).
    generation: u64,
    /// The last match needed the exe link or `argv[0]` and found neither (a process in the
    /// middle of its `exec`): match again at the next poll instead of keeping the result.
    unsettled: bool,
    /// The poll that last listed this pid.
    seen: u64,
}

impl ProcEntry {
    fn new(ino: u64, st: &StatLine, poll: u64) -> Self {
        Self {
            ino,
            starttime: st.starttime,
            comm: st.comm.clone(),
            zombie: st.is_zombie(),
            cmdline: None,
            exe_name: None,
            argv0_name: None,
            apps: Vec::new(),
            generation: 0,
            unsettled: false,
            seen: poll,
        }
    }

    /// The process exec'd (or renamed itself): everything derived from it is stale.
    fn exec(&mut self, comm: String) {
        self.comm = comm;
        self.cmdline = None;
        self.exe_name = None;
        self.argv0_name = None;
        self.generation = 0;
    }
}

/// The fields of `/proc/PID/stat` the poller uses (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
struct StatLine {
    comm: String,
    state: u8,
    /// utime + stime (fields 14 and 15).
    ticks: u64,
    starttime: u64,
    rss_pages: u64,
}

impl StatLine {
    fn is_zombie(&self) -> bool {
        self.state == b'Z' || self.state == b'X'
    }
}

/// Parses `/proc/PID/stat`. `comm` may contain spaces and parentheses, so it spans from
/// the first `(` to the last `)`.
fn parse_stat(buf: &[u8]) -> Option<StatLine> {
    let open = buf.iter().position(|&b| b == b'(')?;
    let close = buf.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = String::from_utf8_lossy(&buf[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(&buf[close + 1..]).ok()?;
    let mut f = rest.split_ascii_whitespace();
    let state = *f.next()?.as_bytes().first()?; // field 3
    let mut f = f.skip(10); // fields 4..=13
    let utime: u64 = f.next()?.parse().ok()?; // 14
    let stime: u64 = f.next()?.parse().ok()?; // 15
    let starttime: u64 = f.nth(6)?.parse().ok()?; // 16..=21 skipped, 22
    let rss_pages: u64 = f.nth(1)?.parse().ok()?; // 23 skipped, 24
    Some(StatLine {
        comm,
        state,
        ticks: utime.saturating_add(stime),
        starttime,
        rss_pages,
    })
}

impl Default for Poller {
    fn default() -> Self {
        Self::new()
    }
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
            procs: HashMap::new(),
            matchers: Vec::new(),
            generation: 1,
            buf: Vec::with_capacity(512),
            young_secs: YOUNG_SECS,
            net: None,
            port_app_pids: Vec::new(),
            net_reads: 0,
            boot_epoch_ms: boot_epoch_ms(),
        }
    }

    /// Unix ms at which a process with `stat` start time `starttime` (clock ticks after
    /// boot) started.
    fn started_at_ms(&self, starttime: u64) -> Option<u64> {
        let boot = self.boot_epoch_ms?;
        let after_boot = (starttime as f64 / self.ticks_per_sec * 1000.0) as u64;
        Some(boot.saturating_add(after_boot))
    }

    /// Bumps the matcher generation if the `exe`/`cmdline` criteria changed.
    fn sync_matchers(&mut self, cfg: &Config) {
        let same = self.matchers.len() == cfg.apps.len()
            && self.matchers.iter().zip(&cfg.apps).all(|((exe, re), a)| {
                *exe == a.matcher.exe
                    && re.as_deref() == a.matcher.cmdline.as_ref().map(|r| r.as_str())
            });
        if !same {
            self.matchers = cfg
                .apps
                .iter()
                .map(|a| {
                    (
                        a.matcher.exe.clone(),
                        a.matcher.cmdline.as_ref().map(|r| r.as_str().to_string()),
                    )
                })
                .collect();
            self.generation += 1;
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
        self.polls += 1;
        let poll = self.polls;
        self.sync_matchers(cfg);
        let generation = self.generation;

        let pidfile_pids: Vec<Option<i32>> = cfg
            .apps
            .iter()
            .map(|a| a.matcher.pid_file.as_ref().and_then(|p| read_pid_file(p)))
            .collect();
        // Whether process `pid` passes application `i`'s pid-file criterion.
        let pid_ok = |i: usize, pid: i32| {
            cfg.apps[i].matcher.pid_file.is_none() || pidfile_pids[i] == Some(pid)
        };

        let mut pids: Vec<Vec<u32>> = vec![Vec::new(); cfg.apps.len()];
        let mut cpu_ticks: Vec<u64> = vec![0; cfg.apps.len()];
        let mut rss: Vec<u64> = vec![0; cfg.apps.len()];
        // Earliest start time (clock ticks after boot) among each application's processes.
        let mut first_start: Vec<Option<u64>> = vec![None; cfg.apps.len()];
        let mut new_ticks = HashMap::new();

        // Start times after this are "young" (clock ticks after boot).
        let young_after = boot_time_secs()
            .map(|s| ((s - self.young_secs as f64) * self.ticks_per_sec).max(0.0) as u64);
        let mut buf = std::mem::take(&mut self.buf);
        let dir = if cfg.apps.is_empty() {
            None
        } else {
            std::fs::read_dir("/proc").ok()
        };
        for ent in dir.into_iter().flatten().flatten() {
            let name = ent.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if pid == self.self_pid {
                continue;
            }
            let Some((e, mut fresh)) = lookup(&mut self.procs, pid, ent.ino(), poll, &mut buf)
            else {
                continue; // vanished meanwhile
            };
            if e.zombie {
                continue;
            }
            if fresh.is_none() {
                let stagger = poll.wrapping_add(pid as u64);
                let young = young_after.is_some_and(|t| e.starttime > t);
                if young || stagger.is_multiple_of(EXEC_RECHECK_POLLS) {
                    buf.clear();
                    if read_proc_file(pid, "comm", &mut buf).is_err() {
                        e.seen = 0; // vanished: dropped below
                        continue;
                    }
                    let comm = String::from_utf8_lossy(buf.strip_suffix(b"\n").unwrap_or(&buf));
                    if comm != e.comm.as_str() {
                        let comm = comm.into_owned();
                        e.exec(comm);
                    }
                }
                if e.cmdline.is_some() && (young || stagger.is_multiple_of(CMDLINE_REFRESH_POLLS)) {
                    // Re-match only if it changed: regex searches cost more than the read.
                    let line = read_cmdline(pid, &mut buf);
                    if e.cmdline.as_deref() != Some(line.as_str()) {
                        e.cmdline = Some(line);
                        e.generation = 0;
                    }
                }
            }
            if e.generation != generation {
                e.apps = match_apps(cfg, pid, e, &mut buf);
                e.generation = if e.unsettled { 0 } else { generation };
            }
            if !e.apps.iter().any(|&i| pid_ok(i, pid)) {
                continue;
            }
            // A candidate: CPU and memory need a fresh `stat`.
            let st = match fresh.take() {
                Some(st) => st,
                None => {
                    buf.clear();
                    let st = read_proc_file(pid, "stat", &mut buf)
                        .ok()
                        .and_then(|()| parse_stat(&buf));
                    let Some(st) = st else {
                        e.seen = 0;
                        continue;
                    };
                    if st.starttime != e.starttime {
                        // Reused pid behind an unchanged inode number: start over.
                        *e = ProcEntry::new(e.ino, &st, poll);
                    } else if st.comm != e.comm {
                        e.exec(st.comm.clone());
                    }
                    if e.generation != generation {
                        e.apps = match_apps(cfg, pid, e, &mut buf);
                        e.generation = if e.unsettled { 0 } else { generation };
                    }
                    st
                }
            };
            if st.is_zombie() {
                e.zombie = true;
                continue;
            }
            let key = (pid, e.starttime);
            let mut counted = false;
            for &i in &e.apps {
                if !pid_ok(i, pid) {
                    continue;
                }
                if let Some(prev) = self.prev_ticks.get(&key) {
                    cpu_ticks[i] += st.ticks.saturating_sub(*prev);
                }
                if !counted {
                    new_ticks.insert(key, st.ticks);
                    counted = true;
                }
                rss[i] += st.rss_pages.saturating_mul(self.page_size);
                pids[i].push(pid as u32);
                first_start[i] = Some(first_start[i].map_or(e.starttime, |t| t.min(e.starttime)));
            }
        }
        // Pids not listed this time are gone.
        self.procs.retain(|_, e| e.seen == poll);
        self.buf = buf;
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
            // A new sample is due when the old one is too old, or when an application that
            // still runs has a different process set (an instance started or ended: its port
            // state may have changed). An application whose last instance ended needs none:
            // it is reported not running at once, without the ~10-20 ms of reading
            // /proc/net/tcp{,6} (its port figures may be up to `net_interval` old until then).
            let changed = port_app_pids.iter().any(|(name, p)| {
                !p.is_empty()
                    && self
                        .port_app_pids
                        .iter()
                        .find(|(n, _)| n == name)
                        .is_none_or(|(_, old)| old != p)
            });
            // A running application waiting for one of its ports: sample at every poll
            // until the port listens.
            let waiting = self.net.as_ref().is_some_and(|(_, t)| {
                cfg.apps.iter().zip(&pids).any(|(a, p)| {
                    !p.is_empty() && a.ports.iter().any(|port| !t.listening.contains(port))
                })
            });
            let fresh = !changed
                && !waiting
                && self
                    .net
                    .as_ref()
                    .is_some_and(|(at, _)| now.duration_since(*at) < cfg.daemon.net_interval);
            if !fresh {
                self.net = Some((now, NetTable::read()));
                self.net_reads += 1;
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
                let running = !p.is_empty() && listen_ok;
                AppStatus {
                    name: app.name.clone(),
                    running,
                    instances: p.len() as u32,
                    pids: p,
                    cpu_percent,
                    rss_bytes: rss[i],
                    ports,
                    load_hints: app.load.clone(),
                    host: app.host.or(cfg.daemon.advertise),
                    started_at_ms: first_start[i]
                        .filter(|_| running)
                        .and_then(|t| self.started_at_ms(t)),
                }
            })
            .collect()
    }
}

/// The cache entry of `pid`, confirmed for this poll. If the pid is new or its `/proc/PID`
/// inode changed, `stat` is read and returned with it (a changed start time means a reused
/// pid and a new entry). `None` if the process vanished.
fn lookup<'a>(
    procs: &'a mut HashMap<i32, ProcEntry>,
    pid: i32,
    ino: u64,
    poll: u64,
    buf: &mut Vec<u8>,
) -> Option<(&'a mut ProcEntry, Option<StatLine>)> {
    let known = procs.get(&pid).is_some_and(|e| e.ino == ino);
    let mut fresh = None;
    if !known {
        buf.clear();
        let st = read_proc_file(pid, "stat", buf)
            .ok()
            .and_then(|()| parse_stat(buf));
        let Some(st) = st else {
            procs.remove(&pid);
            return None;
        };
        match procs.get_mut(&pid) {
            Some(e) if e.starttime == st.starttime => {
                // Same process, its dentry was evicted and re-created.
                e.ino = ino;
                e.zombie |= st.is_zombie();
                if e.comm != st.comm {
                    e.exec(st.comm.clone());
                }
            }
            _ => {
                procs.insert(pid, ProcEntry::new(ino, &st, poll));
            }
        }
        fresh = Some(st);
    }
    let e = procs.get_mut(&pid)?;
    e.seen = poll;
    Some((e, fresh))
}

/// Indices of the applications whose `exe` and `cmdline` criteria process `pid` meets
/// (the pid file is checked per poll). Reads the command line and the exe link only when
/// a criterion needs them, and caches them in `e`.
fn match_apps(cfg: &Config, pid: i32, e: &mut ProcEntry, buf: &mut Vec<u8>) -> Vec<usize> {
    e.unsettled = false;
    let mut out = Vec::new();
    for (i, app) in cfg.apps.iter().enumerate() {
        if static_match(app, pid, e, buf) {
            out.push(i);
        }
    }
    out
}

fn static_match(app: &AppSpec, pid: i32, e: &mut ProcEntry, buf: &mut Vec<u8>) -> bool {
    let m = &app.matcher;
    if let Some(exe) = &m.exe {
        if exe.len() <= COMM_LEN {
            if e.comm != *exe {
                return false;
            }
        } else {
            // comm holds only the first 15 bytes: confirm with the exe link.
            if !exe.as_bytes().starts_with(e.comm.as_bytes()) || e.comm.len() != COMM_LEN {
                return false;
            }
            // A read that finds nothing is not cached: a process caught in the middle of
            // its `exec` already has its new `comm` but not yet its new argument area (the
            // kernel sets `comm` before the binary loader writes argv), so an empty
            // command line then means "not yet", and caching it would hide the process
            // until its next exec.
            let name = match &e.exe_name {
                Some(n) => n.clone(),
                None => {
                    let n = std::fs::read_link(format!("/proc/{pid}/exe"))
                        .ok()
                        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
                    if n.is_some() {
                        e.exe_name = Some(n.clone());
                    } else {
                        e.unsettled = true;
                    }
                    n
                }
            };
            if name.as_deref() != Some(exe.as_str()) {
                let argv0 = match &e.argv0_name {
                    Some(a) => a.clone(),
                    None => {
                        buf.clear();
                        let a = read_proc_file(pid, "cmdline", buf)
                            .ok()
                            .and_then(|()| argv0_basename(buf));
                        if a.is_some() {
                            e.argv0_name = Some(a.clone());
                        } else {
                            e.unsettled = true;
                        }
                        a
                    }
                };
                if argv0.as_deref() != Some(exe.as_str()) {
                    return false;
                }
            }
        }
    }
    if let Some(re) = &m.cmdline {
        let line = e.cmdline.get_or_insert_with(|| read_cmdline(pid, buf));
        if line.is_empty() || !re.is_match(line) {
            return false;
        }
    }
    true
}

/// Base name of the first NUL-terminated argument of a raw `/proc/PID/cmdline`; `None` if
/// it is empty (kernel threads) or ends in `/`.
fn argv0_basename(raw: &[u8]) -> Option<String> {
    let arg0 = raw.split(|b| *b == 0).next()?;
    let base = arg0.rsplit(|b| *b == b'/').next()?;
    (!base.is_empty()).then(|| String::from_utf8_lossy(base).into_owned())
}

/// `/proc/PID/cmdline` with the arguments joined by single spaces (empty arguments
/// dropped); empty for kernel threads and unreadable processes.
fn read_cmdline(pid: i32, buf: &mut Vec<u8>) -> String {
    buf.clear();
    if read_proc_file(pid, "cmdline", buf).is_err() {
        return String::new();
    }
    let mut line = Vec::with_capacity(buf.len());
    for arg in buf.split(|b| *b == 0).filter(|a| !a.is_empty()) {
        if !line.is_empty() {
            line.push(b' ');
        }
        line.extend_from_slice(arg);
    }
    match String::from_utf8(line) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Seconds since boot, counting suspend (the clock `stat` start times are based on).
fn boot_time_secs() -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the struct we pass.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

/// Wall-clock time of boot in Unix ms: now minus `CLOCK_BOOTTIME` (the clock of the
/// `stat` start times).
fn boot_epoch_ms() -> Option<u64> {
    let up = boot_time_secs()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some(((now - up) * 1000.0) as u64)
}

/// Length of `comm` in the kernel (TASK_COMM_LEN - 1).
const COMM_LEN: usize = 15;

/// Reads `/proc/PID/NAME` into `buf` (appending).
///
/// Plain `read(2)` calls into spare capacity: `File::read_to_end` would add a `statx` and
/// an `lseek` per file for a size hint that procfs files do not have (size 0). `stat` and
/// `comm` are one line generated whole by the first `read`, so a read ending in `\n`
/// ends those files without the extra `read` that returns 0.
fn read_proc_file(pid: i32, name: &str, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(format!("/proc/{pid}/{name}"))?;
    let one_line = name == "stat" || name == "comm";
    loop {
        // `stat` and `comm` fit in 1 KiB; zero-filling more per read would show in profiles.
        let old = buf.len();
        buf.resize(old + if one_line { 1024 } else { 4096 }, 0);
        let r = f.read(&mut buf[old..]);
        let n = *r.as_ref().unwrap_or(&0);
        buf.truncate(old + n);
        match r {
            Ok(0) => return Ok(()),
            Ok(_) if one_line && buf.last() == Some(&b'\n') => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};
    use std::time::Duration;

    /// A config with `daemon_keys` in `[daemon]` and one application `s` described by
    /// `app_keys`.
    fn app_cfg(daemon_keys: &str, app_keys: &str) -> Config {
        crate::config::parse(
            &format!(
                "[daemon]\nauth = \"none\"\npoll_interval_ms = 1000\n{daemon_keys}\
                 [[proxy]]\naddress = \"127.0.0.1:9\"\n[[app]]\nname = \"s\"\n{app_keys}"
            ),
            "t.toml",
        )
        .unwrap()
    }

    /// A config watching `sleep` processes whose command line matches `re`.
    fn cfg(re: &str) -> Config {
        app_cfg("", &format!("exe = \"sleep\"\ncmdline = '{re}'\n"))
    }

    /// A config watching exactly `sleep ARG`.
    fn sleep_cfg(arg: &str) -> Config {
        app_cfg("", &sleep_with(arg))
    }

    /// The application keys matching `sleep ARG` exactly.
    fn sleep_with(arg: &str) -> String {
        format!(
            "exe = \"sleep\"\ncmdline = '^sleep {}$'\n",
            regex_lite::escape(arg)
        )
    }

    /// Polls until application 0 reports exactly `pid` (at most `n` polls, 20 ms apart);
    /// returns the last poll's statuses.
    fn poll_until_pid(p: &mut Poller, c: &Config, pid: u32, n: usize) -> Vec<AppStatus> {
        let mut st = p.poll(c);
        for _ in 0..n {
            if st[0].pids == [pid] {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            st = p.poll(c);
        }
        assert_eq!(st[0].pids, vec![pid]);
        st
    }

    /// A unique `sleep` argument for this test, so parallel tests do not see each other.
    fn arg(tag: u32) -> String {
        format!("{}.{}{tag}", 3000 + tag, std::process::id())
    }

    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn spawn(cmd: &str, args: &[&str]) -> Kill {
        Kill(Command::new(cmd).args(args).spawn().unwrap())
    }

    /// A `sleep` child with this test's own [`arg`] `tag`: the argument, the child, its pid.
    fn sleeper(tag: u32) -> (String, Kill, u32) {
        let a = arg(tag);
        let child = spawn("sleep", &[&a]);
        let pid = child.0.id();
        (a, child, pid)
    }

    #[test]
    fn argv0_basename_takes_the_first_argument_only() {
        assert_eq!(
            argv0_basename(b"/usr/sbin/my-server\0--flag\0").as_deref(),
            Some("my-server")
        );
        assert_eq!(argv0_basename(b"plain").as_deref(), Some("plain"));
        assert_eq!(
            argv0_basename(b"nginx: master /x/y\0").as_deref(),
            Some("y"),
            "setproctitle text is taken as it is"
        );
        assert_eq!(argv0_basename(b"a b/c d\0/e/f\0").as_deref(), Some("c d"));
        assert_eq!(argv0_basename(b""), None);
        assert_eq!(argv0_basename(b"\0x\0"), None);
        assert_eq!(argv0_basename(b"/usr/bin/\0"), None);
    }

    /// A config watching processes whose executable name is `exe`.
    fn exe_cfg(exe: &str) -> Config {
        app_cfg("", &format!("exe = \"{exe}\"\n"))
    }

    /// `sleep` run through a symbolic link with a name longer than `comm` holds: `comm` is
    /// the link name cut to 15 bytes, `/proc/PID/exe` names the real `sleep`, so only
    /// `argv[0]` confirms the name. With another `argv[0]` the process does not match.
    #[test]
    fn long_exe_name_is_confirmed_by_argv0() {
        let dir = std::env::temp_dir().join(format!("legacy-daemon-argv0-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let name = format!("long-exe-name-{}", std::process::id());
        assert!(name.len() > COMM_LEN);
        let link = dir.join(&name);
        let _ = std::fs::remove_file(&link);
        let sleep = ["/bin/sleep", "/usr/bin/sleep"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("sleep binary");
        std::os::unix::fs::symlink(sleep, &link).unwrap();
        let c = exe_cfg(&name);
        let mut p = Poller::new();

        // argv[0] is the link path: matches.
        let child = Kill(Command::new(&link).arg("300").spawn().unwrap());
        let pid = child.0.id();
        poll_until_pid(&mut p, &c, pid, 250);
        let e = &p.procs[&(pid as i32)];
        assert_eq!(e.comm, &name[..COMM_LEN]);
        assert_eq!(
            e.argv0_name.as_ref().unwrap().as_deref(),
            Some(name.as_str())
        );
        drop(child);

        // Same program, same comm, another argv[0]: no match.
        use std::os::unix::process::CommandExt;
        let other = Kill(
            Command::new(&link)
                .arg0("something-else")
                .arg("300")
                .spawn()
                .unwrap(),
        );
        let pid = other.0.id();
        let comm_path = format!("/proc/{pid}/comm");
        for _ in 0..250 {
            if std::fs::read_to_string(&comm_path).unwrap().trim_end() == &name[..COMM_LEN] {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            std::fs::read_to_string(&comm_path).unwrap().trim_end(),
            &name[..COMM_LEN],
            "exec'd"
        );
        // A young process has comm re-read at every poll, so the next poll sees the exec.
        // The kernel sets the new comm before the loader writes argv, so a poll that
        // lands in between finds an empty command line: the entry stays unsettled (argv0
        // not cached) and the process must not match meanwhile. Poll until it settles.
        let mut settled = None;
        for _ in 0..250 {
            let st = p.poll(&c);
            assert_eq!(st[0].instances, 0, "matched while exec'ing or after it");
            settled = p.procs[&(pid as i32)].argv0_name.clone();
            if settled.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(settled, Some(Some("something-else".to_string())));
        drop(other);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parses_stat_with_odd_comm() {
        let line = b"4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
            7 5 0 0 20 0 1 0 123456 2232320 145 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 \
            17 1 0 0 0 0 0\n";
        let st = parse_stat(line).unwrap();
        assert_eq!(st.comm, "a) b (c)");
        assert_eq!(st.state, b'S');
        assert_eq!(st.ticks, 12);
        assert_eq!(st.starttime, 123456);
        assert_eq!(st.rss_pages, 145);
        assert!(!st.is_zombie());
        let z = parse_stat(b"7 (x) Z 1 0 0 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 99 0 0").unwrap();
        assert!(z.is_zombie());
        assert_eq!((z.ticks, z.starttime, z.rss_pages), (3, 99, 0));
    }

    #[test]
    fn rejects_truncated_stat() {
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"1 (x"), None);
        assert_eq!(parse_stat(b"1 x) S 1 2 3"), None);
        assert_eq!(
            parse_stat(b"1 (x) S 1 0 0 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0"),
            None
        );
    }

    #[test]
    fn reads_proc_files_whole() {
        let pid = std::process::id() as i32;
        for name in ["comm", "cmdline", "environ"] {
            let mut buf = b"prefix".to_vec();
            read_proc_file(pid, name, &mut buf).unwrap();
            let want = std::fs::read(format!("/proc/self/{name}")).unwrap();
            assert_eq!(&buf[..6], b"prefix");
            assert_eq!(&buf[6..], want.as_slice(), "{name}");
        }
        let mut buf = Vec::new();
        read_proc_file(pid, "stat", &mut buf).unwrap();
        let st = parse_stat(&buf).unwrap();
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(st.comm, comm.trim_end());
        assert!(st.starttime > 0 && st.rss_pages > 0);
        assert!(read_proc_file(pid, "no-such-file", &mut buf).is_err());
    }

    #[test]
    fn finds_a_process_and_forgets_it_when_it_exits() {
        let (a, mut child, pid) = sleeper(1);
        let c = sleep_cfg(&a);
        let mut p = Poller::new();
        // The child may still be between fork and exec at the first poll.
        let st = poll_until_pid(&mut p, &c, pid, 50);
        assert!(st[0].running);
        assert!(st[0].rss_bytes > 0);
        assert!(p.procs.contains_key(&(pid as i32)));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let st = p.poll(&c);
        assert_eq!(st[0].instances, 0);
        assert!(!st[0].running);
        assert!(!p.procs.contains_key(&(pid as i32)));
    }

    /// The reported start time is the process's own (issue 19 item 8): close to when it
    /// was spawned, the same from a second poller (a restarted daemon), and stable from
    /// poll to poll; `None` once it is gone. The host comes from `[daemon] advertise`.
    #[test]
    fn reports_the_process_start_time_and_the_advertised_host() {
        let before = crate::daemon::now_ms();
        let (a, mut child, pid) = sleeper(9);
        let c = app_cfg("advertise = \"10.9.8.7\"\n", &sleep_with(&a));
        let mut p = Poller::new();
        let st = poll_until_pid(&mut p, &c, pid, 50);
        assert_eq!(st[0].host, Some("10.9.8.7".parse().unwrap()));
        let started = st[0].started_at_ms.expect("start time");
        // Clock ticks are 10 ms; the boot-time estimate adds a few ms.
        assert!(
            started + 50 >= before && started <= crate::daemon::now_ms() + 50,
            "started {started}, spawned after {before}"
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(p.poll(&c)[0].started_at_ms, Some(started), "stable");
        let other = Poller::new().poll(&c)[0].started_at_ms.expect("known");
        assert!(other.abs_diff(started) <= 20, "{other} vs {started}");
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let st = p.poll(&c);
        assert_eq!(st[0].started_at_ms, None);
    }

    /// The end of an application's last instance is reported without a new
    /// `/proc/net/tcp` sample (it costs ~10-20 ms); a new instance takes one at once.
    #[test]
    fn last_instance_ending_needs_no_net_sample_but_a_new_one_does() {
        let a = arg(7);
        let c = app_cfg(
            "net_interval_ms = 600000\n",
            &(sleep_with(&a) + "ports = [9]\n"),
        );
        let mut p = Poller::new();
        p.poll(&c);
        assert_eq!(p.net_reads, 1, "first poll samples the table");
        p.poll(&c);
        assert_eq!(p.net_reads, 1, "nothing changed: the sample is fresh");
        let mut child = spawn("sleep", &[&a]);
        let pid = child.0.id();
        assert!(polls_until_seen(&mut p, &c, pid, 50).is_some());
        assert!(p.net_reads >= 2, "a new instance takes a new sample");
        // Port 9 does not listen: the poller samples at every poll, waiting for it.
        let before = p.net_reads;
        p.poll(&c);
        assert_eq!(p.net_reads, before + 1);
        let after_start = p.net_reads;
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let st = p.poll(&c);
        assert!(!st[0].running);
        assert_eq!(st[0].instances, 0);
        assert_eq!(
            p.net_reads, after_start,
            "last instance gone: no new sample"
        );
        let child2 = spawn("sleep", &[&a]);
        assert!(polls_until_seen(&mut p, &c, child2.0.id(), 50).is_some());
        assert!(p.net_reads > after_start, "restarted: new sample");
    }

    /// A server that opens its port after its process started is reported listening at the
    /// next poll, not up to `net_interval_ms` later (issue 19: up to 5 s late); once it
    /// listens the table is sampled at the `net_interval_ms` pace again.
    #[test]
    fn a_port_that_starts_listening_late_is_seen_at_the_next_poll() {
        let dir = std::env::temp_dir().join(format!("ld-late-port-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("s.pid");
        // The poller skips its own process: a child stands in for the server (the port
        // table is host-wide, so this test process opens the port for it).
        let child = spawn("sleep", &[&arg(11)]);
        std::fs::write(&pid_file, child.0.id().to_string()).unwrap();
        // A free port, released again so that nothing listens on it yet.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = app_cfg(
            "net_interval_ms = 600000\n",
            &format!(
                "pid_file = \"{}\"\nports = [{port}]\nrequire_listen = true\n",
                pid_file.display()
            ),
        );
        let mut p = Poller::new();
        let st = p.poll(&c);
        assert_eq!(st[0].instances, 1, "the child is the server");
        assert!(!st[0].running, "not listening yet");
        assert_eq!(st[0].ports[0].listening, Some(false));
        let _l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let st = p.poll(&c);
        assert_eq!(
            st[0].ports[0].listening,
            Some(true),
            "seen at the next poll"
        );
        assert!(st[0].running);
        let reads = p.net_reads;
        p.poll(&c);
        p.poll(&c);
        assert_eq!(
            p.net_reads, reads,
            "listening: back to the net_interval pace"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Polls until application 0 reports `pid`, at most `n` times; returns the polls used.
    fn polls_until_seen(p: &mut Poller, c: &Config, pid: u32, n: u64) -> Option<u64> {
        (1..=n).find(|_| p.poll(c)[0].pids == [pid])
    }

    /// A shell that execs `sleep ARG` after a second, seen by `p` as the shell first;
    /// returns 1.5 s later, after the exec. The child and its pid.
    fn exec_sleep_after_a_second(p: &mut Poller, c: &Config, arg: &str) -> (Kill, u32) {
        p.poll(c); // caches the other processes, so the next poll is quick
        let script = format!("sleep 1; exec sleep {arg}");
        let child = spawn("sh", &["-c", &script]);
        let pid = child.0.id();
        assert_eq!(p.poll(c)[0].instances, 0, "still the shell");
        std::thread::sleep(Duration::from_millis(1500));
        (child, pid)
    }

    #[test]
    fn exec_of_a_young_process_is_seen_at_the_next_poll() {
        let a = arg(2);
        let c = sleep_cfg(&a);
        let mut p = Poller::new();
        let (_child, pid) = exec_sleep_after_a_second(&mut p, &c, &a);
        assert_eq!(polls_until_seen(&mut p, &c, pid, 1), Some(1));
    }

    #[test]
    fn exec_of_an_old_process_is_seen_within_the_recheck_period() {
        let a = arg(3);
        let c = sleep_cfg(&a);
        let mut p = Poller::new();
        p.young_secs = 0; // every process counts as old
        let (_child, pid) = exec_sleep_after_a_second(&mut p, &c, &a);
        let n = polls_until_seen(&mut p, &c, pid, EXEC_RECHECK_POLLS);
        assert!(n.is_some(), "not seen within {EXEC_RECHECK_POLLS} polls");
    }

    #[test]
    fn changed_inode_or_start_time_rebuilds_the_entry() {
        let (a, child, pid) = sleeper(4);
        let c = sleep_cfg(&a);
        let mut p = Poller::new();
        assert!(polls_until_seen(&mut p, &c, pid, 50).is_some());
        let key = pid as i32;
        let real_start = p.procs[&key].starttime;
        let real_ino = p.procs[&key].ino;

        // Inode changed, same start time (evicted dentry): entry kept, comm corrected.
        let e = p.procs.get_mut(&key).unwrap();
        e.ino = real_ino ^ 1;
        e.comm = "stale".into();
        assert_eq!(p.poll(&c)[0].pids, vec![pid]);
        assert_eq!(p.procs[&key].ino, real_ino);
        assert_eq!(p.procs[&key].comm, "sleep");

        // Start time differs behind the same inode (matched process): entry rebuilt.
        let e = p.procs.get_mut(&key).unwrap();
        e.starttime = real_start + 1;
        e.cmdline = Some("sleep other".into());
        assert_eq!(p.poll(&c)[0].pids, vec![pid]);
        assert_eq!(p.procs[&key].starttime, real_start);
        assert_eq!(
            p.procs[&key].cmdline.as_deref(),
            Some(format!("sleep {a}").as_str())
        );

        // A non-matching entry claiming another identity is replaced once the inode changes.
        let other = cfg("^no-such-command-line$");
        assert_eq!(p.poll(&other)[0].instances, 0);
        let e = p.procs.get_mut(&key).unwrap();
        e.ino = real_ino ^ 1;
        e.starttime = real_start + 7;
        e.comm = "other".into();
        p.poll(&other);
        assert_eq!(p.procs[&key].starttime, real_start);
        assert_eq!(p.procs[&key].comm, "sleep");
        drop(child);
    }

    #[test]
    fn config_change_rematches_cached_processes() {
        let (a, _child, pid) = sleeper(5);
        let yes = sleep_cfg(&a);
        let no = cfg("^sleep never$");
        let mut p = Poller::new();
        assert!(polls_until_seen(&mut p, &yes, pid, 50).is_some());
        assert_eq!(p.poll(&no)[0].instances, 0);
        assert_eq!(p.poll(&yes)[0].pids, vec![pid]);
    }
}
