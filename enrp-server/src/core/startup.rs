//! Start-up phase of a peering registrar (RFC 5353 §3.1 mentor; rsplib's
//! `InStartupPhase`): ASAP_SERVER_ANNOUNCEs start only once the handlespace is loaded —
//! when the mentor's HANDLE_TABLE download is complete, or when the mentor-discovery
//! timeout passes without one — so that PEs and PUs do not pick a registrar whose
//! handlespace is still empty. Without peering, announces start at once.

use std::time::Instant;

use super::{CoreConfig, Registrar};

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
}
