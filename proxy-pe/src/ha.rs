//! Active/standby pair of proxies (issue 19 item 7; seed 000's hot standby): sans-I/O.
//!
//! Two proxies front the same legacy servers (every daemon reports to both) and watch each
//! other over the peer's read-only control port (`[ha] peer`, the `status` report polled
//! every `poll_ms`). Only the **active** one registers PEs (mode A: the legacy servers;
//! mode B: itself); the **standby** registers nothing and answers no keep-alive. Each proxy
//! has its own `proxy_id`, so their PE identifiers never collide and every change of
//! owner is *make before break*: the new owner's PEs are accepted by the registrar before
//! the old owner withdraws its own, and the pool never lacks a server.
//!
//! Rules ([`Ha::decide`]):
//! - **Start:** standby. It becomes active when the peer is dead (no answer for
//!   `dead_after_ms` since the start or its last answer), when the peer is leaving (an
//!   operator `restart`), or when both are standby and it wins the tie-break.
//! - **Tie-break:** higher `priority` wins; equal priorities: the smaller `proxy_id`.
//! - **Take-over:** a standby whose active peer stops answering (hung, SIGSTOP, crashed,
//!   cut off) takes over after `dead_after_ms`. The hung proxy's PEs are dropped by the
//!   registrar when their keep-alives go unanswered; the servers stay in the pool through
//!   the new owner's PEs meanwhile.
//! - **No split brain:** when both are active (a hung proxy resumed; a partition between
//!   the two healed), the loser of the tie-break steps down once the winner reports every
//!   PE it wants accepted by the registrar and at least as many as the loser has, and only
//!   after the conflict lasted `dead_after_ms` (so that a resumed proxy's stale "accepted"
//!   from before its stall cannot count). Until then both register: PUs see a server twice,
//!   never zero times.
//! - **Planned restart** ([`Ha::leave`], `proxy-pe restart`): the proxy reports itself as
//!   leaving and keeps its PEs; the peer takes over; the leaving proxy exits once the peer
//!   reports all its PEs accepted (and at least as many as the leaving one has), or after
//!   `handover_timeout_ms`, or at once when the peer is dead.

use serde::{Deserialize, Serialize};

use crate::config::HaConfig;

/// A proxy's role in the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Registers nothing; watches the active peer.
    Standby,
    /// Registers the PEs.
    Active,
    /// Active, handing over to the peer before a planned restart.
    Leaving,
}

/// What a proxy tells its peer (part of its `status` report, `ha`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaView {
    /// Its role.
    pub role: Role,
    /// Its `[ha] priority`.
    pub priority: u32,
    /// Its `proxy_id` (tie-break).
    pub proxy_id: String,
    /// PEs it wants registered.
    pub wanted: usize,
    /// Of those, accepted by the registrar on its association.
    pub accepted: usize,
    /// Unix ms when it took its role.
    pub since_ms: u64,
    /// Role changes so far.
    pub changes: u64,
    /// Whether its peer answered within `dead_after_ms`.
    pub peer_alive: bool,
}

/// A change the driver carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start registering (become active).
    BecomeActive,
    /// Withdraw every registration (become standby).
    BecomeStandby,
    /// The planned restart's hand-over is complete (or impossible): exit.
    Exit,
}

/// The pair state machine of one proxy. Time is Unix ms, passed in.
#[derive(Debug, Clone)]
pub struct Ha {
    cfg: HaConfig,
    proxy_id: String,
    role: Role,
    since_ms: u64,
    changes: u64,
    started_ms: u64,
    /// The peer's last answer and when it came.
    peer: Option<(u64, HaView)>,
    /// Since when both are active.
    conflict_since: Option<u64>,
    /// When the planned restart began.
    leaving_since: Option<u64>,
}

impl Ha {
    /// A proxy starting at `now` as standby.
    pub fn new(cfg: HaConfig, proxy_id: &str, now: u64) -> Ha {
        Ha {
            cfg,
            proxy_id: proxy_id.to_string(),
            role: Role::Standby,
            since_ms: now,
            changes: 0,
            started_ms: now,
            peer: None,
            conflict_since: None,
            leaving_since: None,
        }
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the core should register PEs now.
    pub fn registers(&self) -> bool {
        self.role != Role::Standby
    }

    /// Settings in force (replaced on reload, keeping the role).
    pub fn set_config(&mut self, cfg: HaConfig) {
        self.cfg = cfg;
    }

    /// The peer answered with `view` at `now`.
    pub fn peer_answer(&mut self, now: u64, view: HaView) {
        self.peer = Some((now, view));
    }

    fn peer_alive(&self, now: u64) -> Option<&HaView> {
        self.peer
            .as_ref()
            .filter(|(t, _)| now.saturating_sub(*t) < self.cfg.dead_after_ms)
            .map(|(_, v)| v)
    }

    /// Whether this proxy wins the tie-break against `peer`.
    fn wins_over(&self, peer: &HaView) -> bool {
        (self.cfg.priority, std::cmp::Reverse(self.proxy_id.as_str()))
            > (peer.priority, std::cmp::Reverse(peer.proxy_id.as_str()))
    }

    /// Operator `restart`: hand over to the peer, then exit ([`Decision::Exit`]).
    pub fn leave(&mut self, now: u64) {
        self.leaving_since = Some(now);
        if self.role != Role::Leaving {
            self.set_role(now, Role::Leaving);
        }
    }

    fn set_role(&mut self, now: u64, role: Role) {
        self.role = role;
        self.since_ms = now;
        self.changes += 1;
        self.conflict_since = None;
    }

    /// What to do at `now`, given how many PEs this proxy wants registered. Called on every
    /// tick and peer answer.
    pub fn decide(&mut self, now: u64, wanted: usize) -> Option<Decision> {
        let peer = self.peer_alive(now).cloned();
        // The peer covers everything: active, all of its PEs accepted, at least ours.
        let covers =
            |p: &HaView| p.role == Role::Active && p.accepted >= p.wanted && p.accepted >= wanted;
        match self.role {
            Role::Leaving => {
                let since = self.leaving_since.unwrap_or(now);
                let done = match &peer {
                    None => true,
                    Some(p) => covers(p),
                };
                (done || now.saturating_sub(since) >= self.cfg.handover_timeout_ms)
                    .then_some(Decision::Exit)
            }
            Role::Standby => {
                let take = match &peer {
                    None => {
                        let last = self.peer.as_ref().map_or(self.started_ms, |(t, _)| *t);
                        now.saturating_sub(last) >= self.cfg.dead_after_ms
                    }
                    Some(p) => match p.role {
                        Role::Leaving => true,
                        Role::Standby => self.wins_over(p),
                        Role::Active => false,
                    },
                };
                take.then(|| {
                    self.set_role(now, Role::Active);
                    Decision::BecomeActive
                })
            }
            Role::Active => {
                let Some(p) = peer.filter(|p| p.role == Role::Active) else {
                    self.conflict_since = None;
                    return None;
                };
                if self.wins_over(&p) {
                    self.conflict_since = None;
                    return None;
                }
                let since = *self.conflict_since.get_or_insert(now);
                (now.saturating_sub(since) >= self.cfg.dead_after_ms && covers(&p)).then(|| {
                    self.set_role(now, Role::Standby);
                    Decision::BecomeStandby
                })
            }
        }
    }

    /// What this proxy reports to its peer and in `status --json`.
    pub fn view(&self, now: u64, wanted: usize, accepted: usize) -> HaView {
        HaView {
            role: self.role,
            priority: self.cfg.priority,
            proxy_id: self.proxy_id.clone(),
            wanted,
            accepted,
            since_ms: self.since_ms,
            changes: self.changes,
            peer_alive: self.peer_alive(now).is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn cfg(priority: u32) -> HaConfig {
        HaConfig {
            peer: "127.0.0.1:1".parse().expect("addr"),
            priority,
            poll_ms: 200,
            dead_after_ms: 1_000,
            handover_timeout_ms: 10_000,
        }
    }

    fn view(role: Role, priority: u32, id: &str, wanted: usize, accepted: usize) -> HaView {
        HaView {
            role,
            priority,
            proxy_id: id.into(),
            wanted,
            accepted,
            since_ms: T0,
            changes: 0,
            peer_alive: true,
        }
    }

    #[test]
    fn a_lone_proxy_becomes_active_after_dead_after() {
        let mut h = Ha::new(cfg(100), "a", T0);
        assert_eq!(h.role(), Role::Standby);
        assert!(!h.registers());
        assert_eq!(h.decide(T0 + 999, 3), None);
        assert_eq!(h.decide(T0 + 1_000, 3), Some(Decision::BecomeActive));
        assert!(h.registers());
        assert_eq!(h.decide(T0 + 5_000, 3), None);
    }

    #[test]
    fn standby_stays_while_the_active_answers_and_takes_over_when_it_stops() {
        let mut h = Ha::new(cfg(200), "b", T0);
        // The peer is active (lower priority does not matter: no preemption of a
        // standby over a live active peer).
        for t in (0..5_000).step_by(200) {
            h.peer_answer(T0 + t, view(Role::Active, 100, "a", 3, 3));
            assert_eq!(h.decide(T0 + t, 3), None, "t = {t}");
        }
        // Hung at T0 + 4800: no answer any more; dead 1 s after its last answer.
        assert_eq!(h.decide(T0 + 5_799, 3), None);
        assert_eq!(h.decide(T0 + 5_800, 3), Some(Decision::BecomeActive));
        assert_eq!(h.view(T0 + 5_800, 3, 0).role, Role::Active);
        assert!(!h.view(T0 + 5_800, 3, 0).peer_alive);
    }

    #[test]
    fn two_standbys_pick_the_higher_priority_then_the_smaller_id() {
        let mut a = Ha::new(cfg(100), "a", T0);
        a.peer_answer(T0 + 200, view(Role::Standby, 200, "b", 0, 0));
        assert_eq!(a.decide(T0 + 200, 3), None);
        let mut b = Ha::new(cfg(200), "b", T0);
        b.peer_answer(T0 + 200, view(Role::Standby, 100, "a", 0, 0));
        assert_eq!(b.decide(T0 + 200, 3), Some(Decision::BecomeActive));
        // Equal priorities: the smaller proxy_id.
        let mut a = Ha::new(cfg(100), "a", T0);
        a.peer_answer(T0 + 200, view(Role::Standby, 100, "b", 0, 0));
        assert_eq!(a.decide(T0 + 200, 3), Some(Decision::BecomeActive));
        let mut b = Ha::new(cfg(100), "b", T0);
        b.peer_answer(T0 + 200, view(Role::Standby, 100, "a", 0, 0));
        assert_eq!(b.decide(T0 + 200, 3), None);
    }

    /// A resumed proxy and the one that took over are both active: the loser steps down
    /// only once the winner has everything accepted, and only after the conflict lasted
    /// `dead_after_ms`; the winner never does.
    #[test]
    fn split_brain_the_loser_yields_after_the_winner_covers_everything() {
        let mut b = Ha::new(cfg(100), "b", T0);
        assert_eq!(b.decide(T0 + 1_000, 3), Some(Decision::BecomeActive));
        // The winner (priority 200) resumes claiming all accepted (stale): not yet.
        b.peer_answer(T0 + 2_000, view(Role::Active, 200, "a", 3, 3));
        assert_eq!(b.decide(T0 + 2_000, 3), None);
        // Its association was lost: pending again, re-registering.
        b.peer_answer(T0 + 2_200, view(Role::Active, 200, "a", 3, 0));
        assert_eq!(b.decide(T0 + 2_200, 3), None);
        b.peer_answer(T0 + 3_000, view(Role::Active, 200, "a", 3, 2));
        assert_eq!(b.decide(T0 + 3_000, 3), None, "not everything accepted");
        b.peer_answer(T0 + 3_200, view(Role::Active, 200, "a", 3, 3));
        assert_eq!(b.decide(T0 + 3_200, 3), Some(Decision::BecomeStandby));
        assert!(!b.registers());
        // The winner keeps its role whatever the loser says.
        let mut a = Ha::new(cfg(200), "a", T0);
        assert_eq!(a.decide(T0 + 1_000, 3), Some(Decision::BecomeActive));
        for t in [2_000, 3_000, 9_000] {
            a.peer_answer(T0 + t, view(Role::Active, 100, "b", 3, 3));
            assert_eq!(a.decide(T0 + t, 3), None);
        }
        // A winner that covers fewer servers than the loser has does not take over.
        let mut b = Ha::new(cfg(100), "b", T0);
        b.decide(T0 + 1_000, 3);
        b.peer_answer(T0 + 2_000, view(Role::Active, 200, "a", 2, 2));
        b.peer_answer(T0 + 4_000, view(Role::Active, 200, "a", 2, 2));
        assert_eq!(b.decide(T0 + 4_000, 3), None);
    }

    #[test]
    fn planned_restart_hands_over_then_exits() {
        let mut a = Ha::new(cfg(200), "a", T0);
        a.decide(T0 + 1_000, 3);
        a.peer_answer(T0 + 1_900, view(Role::Standby, 100, "b", 0, 0));
        a.leave(T0 + 2_000);
        assert_eq!(a.role(), Role::Leaving);
        assert!(a.registers(), "keeps its PEs until the peer has them");
        assert_eq!(a.decide(T0 + 2_000, 3), None);
        // The standby sees "leaving" and takes over.
        let mut b = Ha::new(cfg(100), "b", T0);
        b.peer_answer(T0 + 2_100, a.view(T0 + 2_100, 3, 3));
        assert_eq!(b.decide(T0 + 2_100, 3), Some(Decision::BecomeActive));
        a.peer_answer(T0 + 2_200, view(Role::Active, 100, "b", 3, 1));
        assert_eq!(a.decide(T0 + 2_200, 3), None);
        a.peer_answer(T0 + 2_400, view(Role::Active, 100, "b", 3, 3));
        assert_eq!(a.decide(T0 + 2_400, 3), Some(Decision::Exit));
        // No live peer: exit at once; a peer that never covers: after the timeout.
        let mut c = Ha::new(cfg(100), "c", T0);
        c.decide(T0 + 1_000, 3);
        c.leave(T0 + 1_000);
        assert_eq!(c.decide(T0 + 1_000, 3), Some(Decision::Exit));
        let mut d = Ha::new(cfg(100), "d", T0);
        d.decide(T0 + 1_000, 3);
        d.leave(T0 + 2_000);
        d.peer_answer(T0 + 2_000, view(Role::Standby, 50, "e", 0, 0));
        assert_eq!(d.decide(T0 + 2_000, 3), None);
        d.peer_answer(T0 + 11_999, view(Role::Active, 50, "e", 3, 0));
        assert_eq!(d.decide(T0 + 11_999, 3), None);
        d.peer_answer(T0 + 12_000, view(Role::Active, 50, "e", 3, 0));
        assert_eq!(d.decide(T0 + 12_000, 3), Some(Decision::Exit));
    }
}
