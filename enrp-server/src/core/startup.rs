//! Start-up phase of a peering registrar (RFC 5353 §3.1 mentor; rsplib's
//! `InStartupPhase`): ASAP_SERVER_ANNOUNCEs start only once the handlespace is loaded —
//! when the mentor's HANDLE_TABLE download is complete, or when the mentor-discovery
//! timeout passes without one — so that PEs and PUs do not pick a registrar whose
//! handlespace is still empty. Without peering, announces start at once.
//!
//! HANDLE_RESOLUTIONs for a pool we do not know yet are held during the start-up phase
//! and answered when it ends ([`HeldResolution`]). rsplib answers them at once (its
//! `InStartupPhase` only delays the announces), so a restarted rsplib registrar tells a PU
//! with a static registrar list that a pool is unknown until the mentor's table is in; the
//! netns chaos soak saw exactly that ("pool … is unknown to the registrar" right after
//! restarts). Held, the PU gets the pool's PEs a moment later, well within its T1
//! (the phase lasts the mentor-discovery timeout, or as long as the mentor's download
//! runs). Known pools are answered at once, as before.

use std::time::Instant;

use asap::wire::{HandleResolutionOption, PoolHandle};

use super::{Action, AssocId, CoreConfig, Registrar};

/// Most HANDLE_RESOLUTIONs held during the start-up phase; beyond, they are answered at
/// once (a PU flood must not grow the registrar's memory).
pub const MAX_HELD_RESOLUTIONS: usize = 4096;

/// A HANDLE_RESOLUTION for a pool unknown during the start-up phase, answered when the
/// phase ends (or dropped if its association is gone by then).
#[derive(Debug, Clone)]
pub(super) struct HeldResolution {
    pub(super) assoc: AssocId,
    pub(super) handle: PoolHandle,
    pub(super) option: Option<HandleResolutionOption>,
}

/// When the first ASAP_SERVER_ANNOUNCE is due (`None`: no announce targets).
pub(super) fn first_announce(config: &CoreConfig, now: Instant) -> Option<Instant> {
    if config.asap_announce_targets.is_empty() {
        return None;
    }
    Some(if config.peering.enabled {
        now + config.peering.mentor_discovery_timeout
    } else {
        now
    })
}

impl Registrar {
    /// The mentor's handle table download is complete: the start-up phase ends and the
    /// announces start now (if they have not already).
    pub(super) fn handlespace_loaded(&mut self, now: Instant) {
        self.peering.loaded = true;
        if let Some(t) = self.next_announce {
            self.next_announce = Some(t.min(now));
        }
    }

    /// Holds a resolution of the unknown pool `handle` if the start-up phase is not over
    /// (false: answer it now). The phase's end is woken for by the peering timer.
    pub(super) fn hold_resolution(
        &mut self,
        now: Instant,
        assoc: AssocId,
        handle: &PoolHandle,
        option: Option<HandleResolutionOption>,
    ) -> bool {
        if self.startup_complete(now) || self.peering.held.len() >= MAX_HELD_RESOLUTIONS {
            return false;
        }
        self.peering.held.push(HeldResolution {
            assoc,
            handle: handle.clone(),
            option,
        });
        true
    }

    /// Answers the held resolutions once the start-up phase is over (called after every
    /// input and timer).
    pub(super) fn release_held(&mut self, now: Instant, out: &mut Vec<Action>) {
        if now >= self.peering.startup_until {
            self.peering.startup_timer_done = true;
        }
        if self.peering.held.is_empty() || !self.startup_complete(now) {
            return;
        }
        for h in std::mem::take(&mut self.peering.held) {
            if self.assocs.contains_key(&h.assoc) {
                self.answer_resolution(now, h.assoc, h.handle, h.option, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::core::{Action, CoreConfig, Registrar};
    use asap::wire::enrp_msg::HandleTableResponse;
    use asap::wire::{AsapMessage, EnrpMessage, Message};
    use rserpool_tests::enrp_msgs::presence;

    fn announces(out: &[Action]) -> usize {
        out.iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::SendDatagram {
                        message: Message::Asap(AsapMessage::ServerAnnounce(_)),
                        ..
                    }
                )
            })
            .count()
    }

    fn config(peering: bool) -> CoreConfig {
        let mut c = CoreConfig::new(5);
        c.asap_announce_targets = vec!["239.0.0.50:3863".parse().expect("lit")];
        c.peering.enabled = peering;
        c.peering.unicast = crate::core::PeerTransport::Datagrams;
        // The peer of these tests is allowed (issue 13: only allowed peers are heard).
        c.security.peer_allow = vec![crate::core::PeerAllow::Net(
            "127.0.0.0/8".parse().expect("lit"),
        )];
        c
    }

    fn from_peer(r: &mut Registrar, now: std::time::Instant, m: impl Into<Message>) {
        r.handle_datagram(now, "127.0.0.7:9901".parse().expect("lit"), &m.into());
    }

    /// Peer 7's (the mentor's) handle table: empty.
    fn empty_table_of_7() -> HandleTableResponse {
        HandleTableResponse {
            reject: false,
            more: false,
            sender: 7,
            receiver: 5,
            pools: vec![],
        }
    }

    /// With peering, no announce before the mentor's table is in; then at once.
    #[test]
    fn announces_wait_for_the_mentor_download() {
        let now = std::time::Instant::now();
        let mut r = Registrar::new(config(true), now);
        assert_eq!(announces(&r.handle_timeout(now)), 0);
        let t = now + Duration::from_millis(300);
        from_peer(&mut r, t, presence(7, 0xFFFF));
        assert_eq!(r.mentor(), Some(7));
        assert_eq!(announces(&r.handle_timeout(t)), 0, "download still running");
        let t2 = t + Duration::from_millis(100);
        from_peer(&mut r, t2, empty_table_of_7());
        assert_eq!(r.poll_timeout(), Some(t2));
        assert_eq!(announces(&r.handle_timeout(t2)), 1);
        // The announces continue in their cycle.
        let out = r.handle_timeout(t2 + Duration::from_millis(1200));
        assert_eq!(announces(&out), 1);
        assert!(!out.iter().any(|a| matches!(
            a,
            Action::PeerSend {
                message: Message::Enrp(EnrpMessage::HandleTableRequest(_)),
                ..
            }
        )));
    }

    /// With peering but no peer heard, announces start at the mentor-discovery timeout;
    /// without peering, at once.
    #[test]
    fn announces_start_at_the_mentor_discovery_timeout_or_at_once() {
        let now = std::time::Instant::now();
        let mut r = Registrar::new(config(true), now);
        let timeout = r.config().peering.mentor_discovery_timeout;
        let before = now + timeout - Duration::from_millis(1);
        assert_eq!(announces(&r.handle_timeout(now)), 0);
        assert_eq!(announces(&r.handle_timeout(before)), 0);
        assert_eq!(announces(&r.handle_timeout(now + timeout)), 1);
        let mut plain = Registrar::new(config(false), now);
        assert_eq!(announces(&plain.handle_timeout(now)), 1);
    }

    /// Issue 16: the start-up phase (systemd READY=1) ends when the mentor's download is
    /// complete, even if that is after the mentor-discovery timeout; with no download
    /// running it ends at the timeout; without peering at once.
    #[test]
    fn startup_completes_after_the_mentor_download_not_before() {
        let now = std::time::Instant::now();
        assert!(Registrar::new(config(false), now).startup_complete(now));
        let mut idle = Registrar::new(config(true), now);
        let timeout = idle.config().peering.mentor_discovery_timeout;
        assert!(!idle.startup_complete(now));
        idle.handle_timeout(now + timeout);
        assert!(
            idle.startup_complete(now + timeout),
            "no mentor: ends at the timeout"
        );

        let mut r = Registrar::new(config(true), now);
        let t = now + Duration::from_millis(300);
        from_peer(&mut r, t, presence(7, 0xFFFF));
        assert_eq!(r.mentor(), Some(7));
        // The request went out at t; the timeout passes while it is unanswered (but not
        // yet given up: MAX-TIME-NO-RESPONSE after t).
        let no_response = r.config().peering.max_time_no_response;
        let late = now + timeout + Duration::from_millis(100);
        assert!(late < t + no_response);
        r.handle_timeout(late);
        assert!(
            !r.startup_complete(late),
            "the mentor's download is still running after the timeout"
        );
        // A download that is given up ends the start-up phase too.
        let mut given_up = Registrar::new(config(true), now);
        from_peer(&mut given_up, t, presence(7, 0xFFFF));
        let after = t + no_response + Duration::from_millis(100);
        given_up.handle_timeout(after);
        assert!(given_up.startup_complete(after), "download given up");
        from_peer(&mut r, late, empty_table_of_7());
        assert!(r.startup_complete(late), "download complete");
    }

    /// The answers to HANDLE_RESOLUTIONs sent on association 1: (pool, PE count, error).
    fn resolutions(out: &[Action]) -> Vec<(String, usize, bool)> {
        out.iter()
            .filter_map(|a| match a.sent() {
                Some((1, Message::Asap(AsapMessage::HandleResolutionResponse(r)))) => Some((
                    r.pool_handle.to_string(),
                    r.pool_elements.len(),
                    r.error.is_some(),
                )),
                _ => None,
            })
            .collect()
    }

    /// A restarted registrar asked for a pool before its mentor's table is in holds the
    /// question and answers it with the pool's PEs when the download completes; a pool it
    /// knows is answered at once. Before, the PU got "pool unknown" (netns chaos soak).
    /// With no mentor the answer comes at the mentor-discovery timeout.
    #[test]
    fn resolutions_of_unknown_pools_wait_for_the_mentor_download() {
        use crate::core::Input;
        use asap::transport::TransportKind;
        use asap::wire::asap_msg::{HandleResolution, Registration};
        use asap::wire::Protocol;
        use asap::wire::{Policy, PoolElementInfo, PoolEntry, TransportParameter, TransportUse};
        let pe = |id| PoolElementInfo {
            id,
            home_server_id: 7,
            registration_life: 60_000,
            user_transport: TransportParameter::Sctp {
                port: 7,
                transport_use: TransportUse::DataPlusControl,
                addresses: vec!["10.0.0.1".parse().expect("lit")],
            },
            policy: Policy::RoundRobin,
            asap_transport: None,
        };
        let now = std::time::Instant::now();
        let mut r = Registrar::new(config(true), now);
        let pu = |r: &mut Registrar, assoc| {
            r.handle(
                now,
                Input::connected(
                    assoc,
                    Protocol::Asap,
                    "10.0.0.1:5000".parse().expect("lit"),
                    TransportKind::Tcp,
                ),
            )
        };
        pu(&mut r, 1);
        pu(&mut r, 2);
        let t = now + Duration::from_millis(300);
        from_peer(&mut r, t, presence(7, 0xFFFF));
        assert_eq!(r.mentor(), Some(7));
        // A PE registered here: its pool is known, answered at once.
        let reg: Message = Registration {
            pool_handle: "L".into(),
            pool_element: pe(0x11),
        }
        .into();
        r.handle_message(t, 2, &reg);
        let out = r.handle_message(t, 1, &HandleResolution::new("L").into());

        assert_eq!(resolutions(&out), vec![("L".into(), 1, false)]);
        // Pool P comes with the mentor's table: held until then.
        let out = r.handle_message(t, 1, &HandleResolution::new("P").into());
        assert_eq!(resolutions(&out), vec![], "held, not refused");
        assert!(resolutions(&r.handle_timeout(t)).is_empty());
        let out = r.handle_datagram(
            t,
            "127.0.0.7:9901".parse().expect("lit"),
            &HandleTableResponse {
                reject: false,
                more: false,
                sender: 7,
                receiver: 5,
                pools: vec![PoolEntry {
                    pool_handle: "P".into(),
                    pool_elements: vec![pe(1), pe(2)],
                }],
            }
            .into(),
        );
        assert_eq!(resolutions(&out), vec![("P".into(), 2, false)]);
        // Start-up over: an unknown pool is an error at once.
        let out = r.handle_message(t, 1, &HandleResolution::new("Q").into());
        assert_eq!(resolutions(&out), vec![("Q".into(), 0, true)]);

        // No peer at all: held until the mentor-discovery timeout, then refused.
        let mut alone = Registrar::new(config(true), now);
        pu(&mut alone, 1);
        let out = alone.handle_message(now, 1, &HandleResolution::new("P").into());
        assert!(resolutions(&out).is_empty());
        let timeout = alone.config().peering.mentor_discovery_timeout;
        assert!(alone.poll_timeout().is_some_and(|w| w <= now + timeout));
        let out = alone.handle_timeout(now + timeout);
        assert_eq!(resolutions(&out), vec![("P".into(), 0, true)]);
    }
}
