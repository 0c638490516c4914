//! Chaos with real processes (issue 14 "Chaos test"; PEERING.md "Tests"): `enrp-server`
//! processes in network namespaces ([`rserpool_tests::netns`], ENRP and ASAP over TCP),
//! real `asap` pool elements and pool users in the test process, random registrar kills,
//! restarts (with a new server ID) and partitions between groups of registrars (blackhole
//! routes; every registrar stays reachable from the PEs and PUs), and heals, while PEs
//! churn: die (abort, no deregistration), deregister, move (abort and register the same
//! identifier at another registrar at once, while the old home may still hold it) and
//! re-register every 10 s.
//!
//! Invariants, checked every second from the handle table dumps of every live registrar
//! (hsdump style) and the PEs' own status:
//! * **no live PE lost**: a PE whose status has said "registered, home H" for [`SETTLE`] is
//!   listed by H with owner H (also during partitions), seen twice in a row;
//! * **convergence**: after each kill, restart or heal (and at the start), within
//!   [`CONVERGENCE_BOUND`] every live PE that existed before it is registered at a live
//!   registrar and every live registrar lists it with the home the PE itself reports (PEs
//!   started since join once settled; the bound counts the time the test process ran, see
//!   [`World::runnable_since`]). While partitioned this is not expected; the clock starts
//!   at the heal. The time it took is recorded (resolution: one check, about 1 s);
//! * **no dead PE survives**: a PE that died or deregistered more than [`DEAD_BOUND`] ago
//!   (counted from its death or the last kill or heal, whichever is later) is listed nowhere;
//! * **ENRP message rate bounded**: every ENRP message between the registrars is captured
//!   on the bridge; HANDLE_UPDATEs ≤ 2 × (peers) × (registrations + removals) + 2 000, and
//!   the busiest second is reported;
//! * **PU wait bounded**: every `PoolUser::refresh` (a HANDLE_RESOLUTION, with registrar
//!   failover) answers within [`pu_bound`] (T1 × (1 + MAX-REQUEST-RETRANSMIT) + connect
//!   timeouts + 2 s: a crashed registrar is silent, the PU gives it up and asks the next),
//!   not counting the time the test process's runtime was stalled during the wait (a probe
//!   task measures it; the PEs and PUs live in the test process, and a machine at load ~40
//!   stalled it for up to 7 s at a time). Raw waits and stalls are reported.
//!
//! Kills are SIGKILL (the PEs' associations reset, they hunt at once) or "crashes" (the
//! registrar's link goes down first: nobody hears a reset, its PEs are reached by the
//! takeover winner's H-flag keep-alive; the link comes back with the restart).
//!
//! Two forms. `chaos_short_form` runs in the default test run: 3 registrars, 150 PEs in 5
//! pools, 10 PUs, 30 s of chaos (~48 s wall, also at load 20–36). `chaos_soak` is
//! `#[ignore]`d (10 minutes): 5 registrars, 1 000 PEs in 10 pools, 50 PUs,
//! `RSERPOOL_SOAK=<seconds>` of chaos (default 600), run with `--ignored` (debug or
//! release build). `RSERPOOL_SEED=<n>` repeats a run's random choices (the timing of real
//! processes still differs). Figures are printed (`--nocapture`). Needs root and
//! `ip netns`; otherwise prints `SKIP: <reason>` and passes (`RSERPOOL_REQUIRE_NETNS=1`
//! makes that a failure).
//!
//! `RSERPOOL_SOAK_DIR=<dir>`: the registrar logs, the bridge capture and the event log
//! (`events.log`, with the summary) go to `<dir>` and are kept also when the run passes
//! (default: the target's tmp dir, removed on success). `RSERPOOL_REGISTRAR_BIN=<path>`:
//! the registrar binary to run (default: this build's `enrp-server`), so that a long run
//! can exec a copy while the tree is rebuilt.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asap::pe::{PeConfig, PoolElement, PoolElementConfig};
use asap::pu::{PoolUser, PoolUserConfig};
use asap::wire::{EnrpMessage, Message, Policy, TransportParameter, TransportUse, UpdateAction};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rserpool_tests::netns::{lab_or_skip, Lab, ENRP_PORT};
use rserpool_tests::registrar::dump_table;

/// PE keep-alive interval and timeout of the registrars (ms).
const KEEP_ALIVE_MS: u64 = 2000;
/// Orphan timeout of the registrars (ms): an abandoned takeover's PEs go after this.
const ORPHAN_MS: u64 = 5000;
/// A PE's status must be unchanged this long before the invariants expect it everywhere.
const SETTLE: Duration = Duration::from_secs(3);
/// Convergence after a kill, restart or heal must take at most this long, not counting
/// the time the test runtime was stalled ([`World::runnable_since`]).
const CONVERGENCE_BOUND: Duration = Duration::from_secs(30);
/// A dead PE must be gone everywhere this long after its death (or the last kill or
/// heal): peer failure detection (1.2 s) + takeover expiry (1.5 s) + keep-alive timeout of
/// the adopted copy (2 s) or the orphan timeout (5 s), with slack.
const DEAD_BOUND: Duration = Duration::from_secs(15);
/// The PUs' T1-ENRPrequest (RFC 5352 §5.1; the RFC's 15 s shortened).
const PU_T1: Duration = Duration::from_secs(2);

/// Longest wait of a PU's handle resolution (the failover bound): a registrar that went
/// silent (crashed host) is given up after T1 × (1 + MAX-REQUEST-RETRANSMIT); the hunt may
/// then meet each other dead registrar once (connect timeout, a crashed host does not
/// refuse), and 2 s for the hunt and the answer.
fn pu_bound(p: &Params) -> Duration {
    let dead = (p.registrars - p.min_alive) as u32;
    PU_T1 * (asap::pu::PuConfig::default().max_request_retransmit + 1)
        + asap::transport::defaults::CONNECT_TIMEOUT * dead
        + Duration::from_secs(2)
}
/// Convergence fails after this long whatever the test runtime's stalls ([`World::runnable_since`]).
const CONVERGENCE_HARD_LIMIT: Duration = Duration::from_secs(120);
/// Bound of each handle table dump (a slow one is skipped, not a failure).
const DUMP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
struct Params {
    registrars: usize,
    min_alive: usize,
    pes: usize,
    pools: usize,
    pus: usize,
    duration: Duration,
    seed: u64,
}

impl Params {
    fn seed() -> u64 {
        std::env::var("RSERPOOL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| rand::thread_rng().gen())
    }

    /// The short form: 3 registrars, 150 PEs in 5 pools, 10 PUs, 30 s of chaos.
    fn short() -> Params {
        Params {
            registrars: 3,
            min_alive: 2,
            pes: 150,
            pools: 5,
            pus: 10,
            duration: Duration::from_secs(30),
            seed: Params::seed(),
        }
    }

    /// The soak: 5 registrars, 1 000 PEs in 10 pools, 50 PUs, `RSERPOOL_SOAK` seconds of
    /// chaos (600 when unset).
    fn soak() -> Params {
        let secs = std::env::var("RSERPOOL_SOAK")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(600);
        Params {
            registrars: 5,
            min_alive: 3,
            pes: 1000,
            pools: 10,
            pus: 50,
            duration: Duration::from_secs(secs.max(30)),
            seed: Params::seed(),
        }
    }
}

/// One PE identifier's life in the test.
struct PeSlot {
    pe: Option<PoolElement>,
    pool: usize,
    /// (registered, home) as last read, and when it last changed.
    last: (bool, Option<u32>),
    changed: Instant,
    dead_at: Option<Instant>,
    /// When this incarnation started.
    born: Instant,
    /// Registrations of earlier incarnations (moves, the dead).
    registrations_before: u64,
}

#[derive(Default)]
struct PuStats {
    requests: u64,
    errors: u64,
    waits: Vec<Duration>,
    first_error: Option<String>,
    /// Requests that waited longer than T1: (asked, waited) since the start, and PU, pool
    /// and result, for analysis.
    long: Vec<(Duration, Duration, String)>,
}

struct World {
    lab: Lab,
    p: Params,
    rng: StdRng,
    /// Server ID of each registrar slot while it runs.
    ids: Vec<Option<u32>>,
    generation: Vec<u32>,
    pes: BTreeMap<u32, PeSlot>,
    next_id: u32,
    /// Current partition: the cut pairs.
    cut: Vec<(usize, usize)>,
    /// Start of the current convergence wait.
    pending: Option<(Instant, String)>,
    last_disruption: Instant,
    convergence: Vec<(String, Duration)>,
    violations: Vec<String>,
    suspects: BTreeMap<u32, u32>,
    removals: u64,
    events: Vec<String>,
    start: Instant,
    checks: u64,
    /// Stalls of the test runtime: (when it woke, since the start; lag) of each over 100 ms.
    lags: Arc<Mutex<Vec<(Duration, Duration)>>>,
}

/// The registrar binary (`RSERPOOL_REGISTRAR_BIN` or this build's).
fn registrar_bin() -> String {
    std::env::var("RSERPOOL_REGISTRAR_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_enrp-server").to_string())
}

fn registrar_id(slot: usize, generation: u32) -> u32 {
    0x0E00_0000 | ((slot as u32) << 8) | generation
}

impl World {
    fn log(&mut self, what: String) {
        let line = format!("{:7.1} s  {what}", self.start.elapsed().as_secs_f64());
        eprintln!("{line}");
        self.events.push(line);
    }

    /// Records a violation (printed, kept for the summary and the event log).
    fn violation(&mut self, v: String) {
        eprintln!("VIOLATION {v}");
        self.events.push(format!("VIOLATION {v}"));
        self.violations.push(v);
    }

    fn live(&self) -> Vec<usize> {
        (0..self.p.registrars)
            .filter(|i| self.ids[*i].is_some())
            .collect()
    }

    async fn start_registrar(&mut self, i: usize) {
        self.generation[i] += 1;
        let id = registrar_id(i, self.generation[i]);
        let mut args = self.lab.registrar_args(i, id);
        for (k, v) in [
            ("--keep-alive-interval", KEEP_ALIVE_MS),
            ("--keep-alive-timeout", KEEP_ALIVE_MS),
            ("--orphan-timeout", ORPHAN_MS),
        ] {
            args.extend([k.to_string(), v.to_string()]);
        }
        self.lab
            .start(i, &registrar_bin(), &args)
            .expect("start registrar");
        self.lab.wait_listening(i, Duration::from_secs(60)).await;
        self.ids[i] = Some(id);
    }

    fn pe_config(&self, id: u32, pool: usize, first: usize) -> PoolElementConfig {
        let mut cfg = PeConfig::new(
            format!("chaos-{pool}").as_str(),
            TransportParameter::Tcp {
                port: 7000,
                transport_use: TransportUse::DataOnly,
                address: IpAddr::V4(self.lab.root_ip()),
            },
            Policy::RoundRobin,
        );
        cfg.identifier = Some(id);
        cfg.registration_life = Duration::from_secs(30);
        cfg.reregistration_interval = Some(Duration::from_secs(10));
        cfg.registration_timeout = Duration::from_secs(2);
        let n = self.p.registrars;
        cfg.link.static_registrars = (0..n)
            .map(|k| vec![self.lab.asap((first + k) % n)])
            .collect();
        cfg.link.hunt_initial_backoff = Duration::from_millis(200);
        cfg.link.hunt_max_backoff = Duration::from_secs(1);
        PoolElementConfig::tcp(cfg)
    }

    /// Starts PE `id` (new or moving) preferring registrar slot `first`.
    async fn start_pe(&mut self, id: u32, pool: usize, first: usize) {
        let cfg = self.pe_config(id, pool, first);
        let pe = PoolElement::register(cfg).await.expect("PE starts");
        let now = Instant::now();
        let before = self
            .pes
            .get(&id)
            .map(|s| s.registrations_before)
            .unwrap_or(0);
        self.pes.insert(
            id,
            PeSlot {
                pe: Some(pe),
                pool,
                last: (false, None),
                changed: now,
                dead_at: None,
                born: now,
                registrations_before: before,
            },
        );
    }

    async fn new_pe(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        let pool = self.rng.gen_range(0..self.p.pools);
        let first = self.rng.gen_range(0..self.p.registrars);
        self.start_pe(id, pool, first).await;
    }

    /// Takes the PE out of its slot, counting its registrations.
    fn take_pe(&mut self, id: u32) -> Option<PoolElement> {
        let s = self.pes.get_mut(&id)?;
        let pe = s.pe.take()?;
        s.registrations_before += pe.status().registrations;
        Some(pe)
    }

    /// One churn operation on a random live PE.
    async fn churn(&mut self) {
        let live: Vec<u32> = self
            .pes
            .iter()
            .filter(|(_, s)| s.pe.is_some())
            .map(|(id, _)| *id)
            .collect();
        let Some(&id) = live.choose(&mut self.rng) else {
            return;
        };
        let op = self.rng.gen_range(0..10);
        let pe = self.take_pe(id).expect("live");
        let now = Instant::now();
        if op < 4 {
            // Die: no deregistration; a new PE replaces it.
            pe.abort();
            self.pes.get_mut(&id).expect("slot").dead_at = Some(now);
            self.removals += 1;
            self.new_pe().await;
        } else if op < 7 {
            // Deregister; a new PE replaces it.
            tokio::spawn(async move {
                let _ = pe.deregister().await;
            });
            self.pes.get_mut(&id).expect("slot").dead_at = Some(now);
            self.removals += 1;
            self.new_pe().await;
        } else {
            // Move: the same identifier at once from another registrar.
            pe.abort();
            self.removals += 1;
            let pool = self.pes[&id].pool;
            let first = self.rng.gen_range(0..self.p.registrars);
            self.start_pe(id, pool, first).await;
        }
    }

    async fn chaos_step(&mut self) {
        let live = self.live();
        let dead: Vec<usize> = (0..self.p.registrars)
            .filter(|i| self.ids[*i].is_none())
            .collect();
        let now = Instant::now();
        #[derive(Clone, Copy)]
        enum Step {
            Heal,
            Kill,
            Crash,
            Restart,
            Partition,
        }
        let mut steps = Vec::new();
        if !self.cut.is_empty() {
            steps.extend([Step::Heal, Step::Heal]);
        }
        if live.len() > self.p.min_alive {
            steps.extend([Step::Kill, Step::Crash]);
        }
        if !dead.is_empty() {
            steps.extend([Step::Restart, Step::Restart]);
        }
        if self.cut.is_empty() && live.len() >= 2 {
            steps.push(Step::Partition);
        }
        let Some(&step) = steps.choose(&mut self.rng) else {
            return;
        };
        match step {
            Step::Heal => {
                for (a, b) in std::mem::take(&mut self.cut) {
                    let _ = self.lab.cut(a, b, false);
                }
                self.log("heal".into());
                self.disrupted(now, "heal");
            }
            Step::Kill | Step::Crash => {
                let &i = live.choose(&mut self.rng).expect("live");
                let crash = matches!(step, Step::Crash);
                if crash {
                    // Its host is gone: nobody hears a reset, the PEs find out by the
                    // takeover (H-flag keep-alive from the winner).
                    self.lab.link(i, false).expect("link down");
                }
                self.lab.kill(i);
                let id = self.ids[i].take().expect("running");
                let how = if crash {
                    "crash (link down + kill)"
                } else {
                    "kill"
                };
                self.log(format!("{how} registrar {i} ({id:#x})"));
                self.disrupted(now, how);
            }
            Step::Restart => {
                let &i = dead.choose(&mut self.rng).expect("dead");
                self.lab.link(i, true).expect("link up");
                self.start_registrar(i).await;
                let id = self.ids[i].expect("started");
                self.log(format!("restart registrar {i} as {id:#x}"));
                self.disrupted(Instant::now(), "restart");
            }
            Step::Partition => {
                let mut group = live.clone();
                group.shuffle(&mut self.rng);
                let k = self.rng.gen_range(1..=live.len() / 2);
                let (a, b) = group.split_at(k);
                for x in a {
                    for y in b {
                        self.lab.cut(*x, *y, true).expect("cut");
                        self.cut.push((*x, *y));
                    }
                }
                self.log(format!("partition {a:?} | {b:?}"));
                // Not a convergence point: the clock starts at the heal.
                self.pending = None;
                self.last_disruption = now;
            }
        }
    }

    fn disrupted(&mut self, now: Instant, what: &str) {
        self.last_disruption = now;
        if self.cut.is_empty() {
            // A kill during a partition restarts the clock at the heal only.
            self.pending = Some((now, what.to_string()));
        }
    }

    /// One invariant check (see the module doc).
    async fn check(&mut self) {
        self.checks += 1;
        let now = Instant::now();
        let before = self.statuses(now);
        let live = self.live();
        let mut tables: BTreeMap<usize, BTreeMap<u32, u32>> = BTreeMap::new();
        for &i in &live {
            let addr = self.lab.enrp(i);
            let dump = tokio::time::timeout(DUMP_TIMEOUT, tokio::spawn(dump_table(addr))).await;
            if let Ok(Ok(t)) = dump {
                tables.insert(i, t);
            }
        }
        let after = self.statuses(Instant::now());
        let slot_of: BTreeMap<u32, usize> = live
            .iter()
            .filter_map(|i| self.ids[*i].map(|id| (id, *i)))
            .collect();
        // Settled live PEs: registered at a live home, unchanged across the dumps.
        // Live PEs registered at a live home, unchanged across the dumps; settled: also
        // unchanged for SETTLE before.
        let current: BTreeMap<u32, (u32, bool)> = before
            .iter()
            .filter_map(|(id, (reg, home, since))| {
                let h = (*home)?;
                (*reg
                    && after.get(id).map(|a| (a.0, a.1)) == Some((*reg, *home))
                    && slot_of.contains_key(&h))
                .then_some((*id, (h, now.duration_since(*since) >= SETTLE)))
            })
            .collect();
        let settled: BTreeMap<u32, u32> = current
            .iter()
            .filter(|(_, (_, s))| *s)
            .map(|(id, (h, _))| (*id, *h))
            .collect();

        // No live PE lost: its home lists it as its own.
        let mut missing = Vec::new();
        for (id, h) in &settled {
            let Some(t) = tables.get(&slot_of[h]) else {
                continue;
            };
            if t.get(id) != Some(h) {
                missing.push((*id, *h, t.get(id).copied()));
            }
        }
        let missing_ids: BTreeSet<u32> = missing.iter().map(|m| m.0).collect();
        self.suspects.retain(|id, _| missing_ids.contains(id));
        for (id, h, got) in &missing {
            let n = self.suspects.entry(*id).or_insert(0);
            *n += 1;
            if *n == 2 {
                let v = format!(
                    "{:.1} s: live PE {id:#x} (home {h:#x} by its status) missing at its home: listed as {got:x?}",
                    self.start.elapsed().as_secs_f64()
                );
                self.violation(v);
            }
        }

        // No dead PE survives.
        let mut dead_violations = Vec::new();
        if self.cut.is_empty() {
            for (id, s) in &self.pes {
                let Some(d) = s.dead_at.filter(|_| s.pe.is_none()) else {
                    continue;
                };
                let from = d.max(self.last_disruption);
                if now.duration_since(from) < DEAD_BOUND {
                    continue;
                }
                for (i, t) in &tables {
                    if let Some(h) = t.get(id) {
                        let v = format!(
                            "{:.1} s: dead PE {id:#x} (died {:.1} s ago) still at registrar {i} owned by {h:#x}",
                            self.start.elapsed().as_secs_f64(),
                            now.duration_since(d).as_secs_f64()
                        );
                        dead_violations.push(v);
                    }
                }
            }
        }
        for v in dead_violations {
            self.violation(v);
        }

        // Convergence.
        let Some((since, what)) = self.pending.clone() else {
            return;
        };
        // Every live PE that existed before the disruption is registered at a live home
        // and every live registrar lists it with that home; so are the PEs started since
        // (churn) once settled.
        let complete = tables.len() == live.len();
        let mut expected = settled.clone();
        let mut older_registered = true;
        for (id, s) in &self.pes {
            if s.pe.is_none() || s.born >= since {
                continue;
            }
            match current.get(id) {
                Some((h, _)) => {
                    expected.insert(*id, *h);
                }
                None => older_registered = false,
            }
        }
        let converged = complete
            && older_registered
            && tables
                .values()
                .all(|t| expected.iter().all(|(id, h)| t.get(id) == Some(h)));
        if converged {
            let took = now.duration_since(since);
            self.log(format!(
                "converged after {what}: {:.1} s ({} PEs checked at {} registrars)",
                took.as_secs_f64(),
                expected.len(),
                tables.len()
            ));
            self.convergence.push((what, took));
            self.pending = None;
        } else if self.runnable_since(since, now) > CONVERGENCE_BOUND
            || now.duration_since(since) > CONVERGENCE_HARD_LIMIT
        {
            let mut detail = String::new();
            for (i, t) in &tables {
                let wrong: Vec<_> = expected
                    .iter()
                    .filter(|(id, h)| t.get(id) != Some(h))
                    .map(|(id, h)| (*id, *h, t.get(id).copied()))
                    .take(5)
                    .collect();
                detail += &format!(" registrar {i}: {} PEs, wrong {wrong:x?};", t.len());
            }
            let unsettled: Vec<_> = self
                .pes
                .iter()
                .filter(|(id, s)| s.pe.is_some() && s.born < since && !current.contains_key(id))
                .map(|(id, s)| (*id, s.last))
                .take(5)
                .collect();
            detail += &format!(" unsettled (id, (registered, home)): {unsettled:x?}");
            let v = format!(
                "{:.1} s: no convergence within {CONVERGENCE_BOUND:?} after {what} ({:.1} s, {:.1} s of them the test runtime stalled):{detail}",
                self.start.elapsed().as_secs_f64(),
                now.duration_since(since).as_secs_f64(),
                (now.duration_since(since) - self.runnable_since(since, now)).as_secs_f64()
            );
            self.violation(v);
            self.pending = None;
        }
    }

    /// Time from `since` to `now` the test runtime was not stalled. The PEs live in the test
    /// process: while its runtime stalls they answer no keep-alive (timeout 2 s), so the
    /// registrars drop them and they re-register (run 26 at load ~41: stalled 37 s of the
    /// 42 s after the final heal, ~4 000 keep-alive-timeout removals a minute); convergence
    /// cannot be reached in that time, and the bound is counted without it.
    fn runnable_since(&self, since: Instant, now: Instant) -> Duration {
        let (from, to) = (
            since.saturating_duration_since(self.start),
            now.saturating_duration_since(self.start),
        );
        let stalled: Duration = self
            .lags
            .lock()
            .expect("lags")
            .iter()
            .map(|(end, lag)| {
                (*end)
                    .min(to)
                    .saturating_sub(end.saturating_sub(*lag).max(from))
            })
            .sum();
        (to - from).saturating_sub(stalled)
    }

    /// (registered, home, unchanged since) of every live PE, updating the slots.
    fn statuses(&mut self, now: Instant) -> BTreeMap<u32, (bool, Option<u32>, Instant)> {
        let mut m = BTreeMap::new();
        for (id, s) in self.pes.iter_mut() {
            let Some(pe) = &s.pe else {
                continue;
            };
            let st = pe.status();
            let cur = (st.registered, st.home);
            if cur != s.last {
                s.last = cur;
                s.changed = now;
            }
            m.insert(*id, (cur.0, cur.1, s.changed));
        }
        m
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let k = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[k]
}

/// The short form, in the default test run: it passed 10 times in a row (47–49 s each)
/// next to four soaks at load 20–36 (BENCHMARKS.md "Chaos"). Skipped when `RSERPOOL_SOAK`
/// is set (the soak's command line filters by `netns_chaos` and runs `--ignored` anyway).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_short_form() {
    if std::env::var_os("RSERPOOL_SOAK").is_some() {
        eprintln!("SKIP: RSERPOOL_SOAK is set: the soak is chaos_soak (--ignored)");
        return;
    }
    run(Params::short()).await;
}

/// The soak (10 minutes by default; `RSERPOOL_SOAK=<seconds>`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "10-minute soak: RSERPOOL_SOAK=600 cargo test -p enrp-server --test registrar netns_chaos -- --ignored"]
async fn chaos_soak() {
    run(Params::soak()).await;
}

/// One chaos run with `p` (module doc).
async fn run(p: Params) {
    let keep_dir = std::env::var_os("RSERPOOL_SOAK_DIR").map(std::path::PathBuf::from);
    let log_dir = keep_dir
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf());
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let Some(mut lab) = lab_or_skip("rspcx", 215, p.registrars, &log_dir) else {
        return;
    };
    eprintln!("{p:?} (rerun with RSERPOOL_SEED={})", p.seed);
    eprintln!(
        "registrar logs and capture: {} (event log: {})",
        lab.logs[0]
            .display()
            .to_string()
            .replace("-r0.log", "-r*.log, *.pcap"),
        log_dir.join("events.log").display()
    );
    lab.start_capture(ENRP_PORT).expect("tcpdump");
    let start = Instant::now();
    let lags = Arc::new(Mutex::new(Vec::<(Duration, Duration)>::new()));
    let mut w = World {
        lab,
        p,
        rng: StdRng::seed_from_u64(p.seed),
        ids: vec![None; p.registrars],
        generation: vec![0; p.registrars],
        pes: BTreeMap::new(),
        next_id: 0x0001_0000,
        cut: Vec::new(),
        pending: None,
        last_disruption: start,
        convergence: Vec::new(),
        violations: Vec::new(),
        suspects: BTreeMap::new(),
        removals: 0,
        events: Vec::new(),
        start,
        checks: 0,
        lags: lags.clone(),
    };
    for i in 0..p.registrars {
        w.start_registrar(i).await;
    }
    for _ in 0..p.pes {
        w.new_pe().await;
    }
    w.log(format!(
        "{} registrars, {} PEs started",
        p.registrars, p.pes
    ));
    w.pending = Some((Instant::now(), "start".into()));

    // Pool users: resolve a random pool, 200–500 ms apart, failing over between registrars.
    let stop = Arc::new(AtomicBool::new(false));
    let pu_stats = Arc::new(Mutex::new(PuStats::default()));
    let mut pu_tasks = Vec::new();
    for k in 0..p.pus {
        let mut cfg = PoolUserConfig::tcp();
        cfg.pu.link.static_registrars = (0..p.registrars)
            .map(|j| vec![w.lab.asap((k + j) % p.registrars)])
            .collect();
        cfg.pu.link.hunt_initial_backoff = Duration::from_millis(50);
        cfg.pu.link.hunt_max_backoff = Duration::from_millis(400);
        cfg.pu.request_timeout = PU_T1;
        // Longer than the bound: a request beyond it shows as a wait, not a timeout.
        cfg.call_timeout = pu_bound(&p) + Duration::from_secs(5);
        cfg.seed = Some(p.seed ^ k as u64);
        let pu = PoolUser::start(cfg).await.expect("PU starts");
        let (stop, stats) = (stop.clone(), pu_stats.clone());
        let mut rng = StdRng::seed_from_u64(p.seed.wrapping_add(k as u64));
        let pools = p.pools;
        pu_tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let pool = format!("chaos-{}", rng.gen_range(0..pools));
                let t = Instant::now();
                let r = pu.refresh(pool.as_str()).await;
                let waited = t.elapsed();
                {
                    let mut s = stats.lock().expect("stats");
                    s.requests += 1;
                    s.waits.push(waited);
                    if waited > PU_T1 {
                        let what = format!(
                            "PU {k}, {pool}: {}",
                            match &r {
                                Ok(_) => "answered".to_string(),
                                Err(e) => format!("error {e}"),
                            }
                        );
                        s.long.push((t.duration_since(start), waited, what));
                    }
                    if let Err(e) = r {
                        s.errors += 1;
                        s.first_error.get_or_insert(format!("{pool}: {e}"));
                    }
                }
                let pause = rng.gen_range(200..500);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }));
    }

    // Starvation probe: how late a 100 ms sleep of the test runtime wakes (the PEs and PUs
    // run on the same two worker threads): (when it woke, lag) of every lag over 100 ms.
    // A starved runtime fires the PUs' timers late and reads their answers late too: see
    // the PU wait assertion.
    let mut max_lag = Duration::ZERO;
    let lag_task = {
        let (stop, lags) = (stop.clone(), lags.clone());
        tokio::spawn(async move {
            let mut max = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                tokio::time::sleep(Duration::from_millis(100)).await;
                let lag = t.elapsed().saturating_sub(Duration::from_millis(100));
                max = max.max(lag);
                if lag > Duration::from_millis(100) {
                    lags.lock().expect("lags").push((start.elapsed(), lag));
                }
            }
            max
        })
    };

    // Chaos: a step every 6–15 s; churn and a check every second.
    let churn_per_second = (p.pes / 300).max(1);
    let end = start + p.duration;
    let mut next_step = Instant::now() + Duration::from_secs(8);
    while Instant::now() < end {
        if Instant::now() >= next_step {
            w.chaos_step().await;
            next_step = Instant::now() + Duration::from_secs(w.rng.gen_range(6..=15));
        }
        for _ in 0..churn_per_second {
            w.churn().await;
        }
        w.check().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Heal and let it converge one last time (churn goes on).
    for (a, b) in std::mem::take(&mut w.cut) {
        let _ = w.lab.cut(a, b, false);
    }
    w.log("end of chaos: heal".into());
    let healed = Instant::now();
    w.last_disruption = healed;
    w.pending = Some((healed, "final heal".into()));
    while w.pending.is_some() {
        w.churn().await;
        w.check().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every dead PE must be gone after DEAD_BOUND.
    tokio::time::sleep(DEAD_BOUND.saturating_sub(healed.elapsed())).await;
    w.check().await;
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in pu_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), lag_task).await {
        max_lag = m;
    }

    // ENRP traffic.
    let msgs = w.lab.stop_capture().expect("capture");
    let mut by_type: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut per_second: BTreeMap<u64, u64> = BTreeMap::new();
    let mut updates = 0u64;
    let mut del_updates = 0u64;
    let mut takeovers = 0u64;
    for (t, _, m) in &msgs {
        *by_type.entry(m.name()).or_default() += 1;
        *per_second.entry(t.as_secs()).or_default() += 1;
        match m {
            Message::Enrp(EnrpMessage::HandleUpdate(u)) => {
                updates += 1;
                if u.action == UpdateAction::DelPe {
                    del_updates += 1;
                }
            }
            Message::Enrp(EnrpMessage::TakeoverServer(_)) => takeovers += 1,
            _ => {}
        }
    }
    let busiest = per_second.values().max().copied().unwrap_or(0);
    let registrations: u64 = w
        .pes
        .values()
        .map(|s| s.registrations_before + s.pe.as_ref().map_or(0, |p| p.status().registrations))
        .sum();
    let peers = (p.registrars - 1) as u64;
    let update_bound = 2 * peers * (registrations + w.removals) + 2000;

    let pu = std::mem::take(&mut *pu_stats.lock().expect("stats"));
    let mut waits = pu.waits.clone();
    waits.sort();
    let max_wait = waits.last().copied().unwrap_or_default();
    let mut conv: Vec<Duration> = w.convergence.iter().map(|c| c.1).collect();
    conv.sort();

    let mut summary = String::new();
    macro_rules! say {
        ($($t:tt)*) => {{
            let line = format!($($t)*);
            eprintln!("{line}");
            summary += &line;
            summary.push('\n');
        }};
    }
    say!("==== chaos summary (seed {}) ====", p.seed);
    say!(
        "wall {:.0} s; {} registrars ({} restarts), {} PE identifiers ({} live at the end), {} PUs, {} checks",
        elapsed.as_secs_f64(),
        p.registrars,
        w.generation.iter().map(|g| g - 1).sum::<u32>(),
        w.pes.len(),
        w.pes.values().filter(|s| s.pe.is_some()).count(),
        p.pus,
        w.checks
    );
    say!(
        "convergence: {} waits, median {:.1} s, max {:.1} s: {:?}",
        conv.len(),
        percentile(&conv, 0.5).as_secs_f64(),
        conv.last().copied().unwrap_or_default().as_secs_f64(),
        w.convergence
            .iter()
            .map(|(w, d)| format!("{w} {:.1}", d.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    say!(
        "ENRP: {} messages, busiest second {busiest}, {by_type:?}",
        msgs.len()
    );
    say!(
        "HANDLE_UPDATE: {updates} ({del_updates} DEL_PE) for {registrations} registrations and {} removals, bound {update_bound}; TAKEOVER_SERVER {takeovers}",
        w.removals
    );
    say!(
        "PU: {} resolutions, {} errors{}, wait median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pu.requests,
        pu.errors,
        pu.first_error
            .as_ref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        percentile(&waits, 0.5).as_secs_f64() * 1e3,
        percentile(&waits, 0.99).as_secs_f64() * 1e3,
        max_wait.as_secs_f64() * 1e3
    );
    let lags = std::mem::take(&mut *lags.lock().expect("lags"));
    // Time within [from, to] the test runtime was stalled (the part of each lag inside).
    let stall = |from: Duration, to: Duration| -> Duration {
        lags.iter()
            .map(|(end, lag)| {
                let a = end.saturating_sub(*lag).max(from);
                let b = (*end).min(to);
                b.saturating_sub(a)
            })
            .sum()
    };
    let long: Vec<String> = pu
        .long
        .iter()
        .map(|(asked, waited, what)| {
            format!(
                "{:7.1} s  PU wait {:.1} s (asked at {:.1} s; test runtime stalled {:.1} s meanwhile) {what}",
                (*asked + *waited).as_secs_f64(),
                waited.as_secs_f64(),
                asked.as_secs_f64(),
                stall(*asked, *asked + *waited).as_secs_f64()
            )
        })
        .collect();
    // The PU wait bound is the protocol's (T1 × (1 + MAX-REQUEST-RETRANSMIT) + connect
    // timeouts + 2 s), counted in time the PU could run: the PEs and PUs share the test
    // process's two worker threads, and under machine load ~40 that runtime stalled for
    // up to 7 s at a time (run 20: a 26.9 s wait of which 21 s were stalls; the registrars,
    // separate processes, are not discounted). The raw maximum is reported too.
    let runnable =
        |asked: Duration, waited: Duration| waited.saturating_sub(stall(asked, asked + waited));
    let max_runnable = pu
        .long
        .iter()
        .map(|(a, w, _)| runnable(*a, *w))
        .max()
        .unwrap_or_default()
        .max(
            waits
                .iter()
                .copied()
                .filter(|w| *w <= PU_T1)
                .max()
                .unwrap_or_default(),
        );
    let over: Vec<&String> = pu
        .long
        .iter()
        .zip(&long)
        .filter(|((a, w, _), _)| runnable(*a, *w) > pu_bound(&p))
        .map(|(_, l)| l)
        .collect();
    say!(
        "test runtime: max lag {:.2} s, {} lags over 0.5 s; PU waits over T1: {}; longest PU wait less the runtime's stalls {:.1} ms (bound {:?}), over the bound: {}",
        max_lag.as_secs_f64(),
        lags.iter().filter(|(_, l)| *l > Duration::from_millis(500)).count(),
        pu.long.len(),
        max_runnable.as_secs_f64() * 1e3,
        pu_bound(&p),
        over.len()
    );
    say!("violations: {}", w.violations.len());
    if let Some(dir) = &keep_dir {
        let mut text = w.events.join("\n");
        text += "\n";
        text += &long.join("\n");
        text += "\n";
        for (t, l) in lags.iter().filter(|(_, l)| *l > Duration::from_millis(500)) {
            text += &format!(
                "{:7.1} s  test runtime lag {:.2} s\n",
                t.as_secs_f64(),
                l.as_secs_f64()
            );
        }
        text += "\n";
        text += &summary;
        std::fs::write(dir.join("events.log"), text).expect("events.log");
    }

    assert!(
        w.violations.is_empty(),
        "{} violations, first: {:#?}",
        w.violations.len(),
        &w.violations[..w.violations.len().min(10)]
    );
    assert!(
        updates <= update_bound,
        "HANDLE_UPDATE storm: {updates} > {update_bound}"
    );
    assert!(pu.requests > 0, "the PUs resolved");
    assert!(
        max_runnable <= pu_bound(&p),
        "a PU waited {max_runnable:?} besides the test runtime's stalls (bound {:?}; raw max {max_wait:?}); the waits over the bound: {over:#?}",
        pu_bound(&p)
    );
    assert!(
        w.convergence.len() >= 2,
        "start and final heal converged: {:?}",
        w.convergence
    );
    // With RSERPOOL_SOAK_DIR the logs and the capture are kept.
    w.lab.passed = keep_dir.is_none();
    for s in w.pes.values_mut() {
        if let Some(pe) = s.pe.take() {
            pe.abort();
        }
    }
}
