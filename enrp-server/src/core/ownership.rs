//! Who owns a PE that two registrars both hold over a live ASAP association
//! (PEERING.md "Ownership conflicts"; RFC 5353 §2.4 leaves the case open).
//!
//! It happens while a PE moves from registrar A to B before A's keep-alive drops the old
//! association, and for as long as two PEs with the same identifier in the same pool are
//! registered at different registrars. rsplib re-labels the owner to whoever announced
//! last and never answers; answering every claim with our own ADD_PE (as this registrar
//! did before) makes both sides answer each other forever.
//!
//! Rule: **the newest registration wins; near-ties go to the lower server ID.** A peer's
//! HANDLE_UPDATE ADD_PE is sent when the PE registers there, so it counts as a
//! registration at the time it arrives. If our own last registration of the PE is older
//! than [`CLAIM_TIE_WINDOW`], or the claimant has the lower server ID, we yield: the PE is
//! re-labelled to the claimant, unbound from our association (its loss no longer removes
//! the PE) and no longer kept alive by us, and nothing is sent. Otherwise (our
//! registration is within the window and our ID is lower) we keep it and answer once with
//! our ADD_PE, which the claimant — higher ID, within the window or older — yields to.
//! The higher-ID side never answers, so a conflict costs at most one extra message.
//! A later registration over our association takes the PE back (and is announced as
//! usual), so two live twins alternate with their re-registrations.
//!
//! A handle table entry (audit or mentor download) is not a registration: it may be a
//! copy the peer re-labelled by a takeover while partitioned from us, which it could not
//! verify (the PE is still registered here, over the association we hold). For those the
//! registrar holding the association stays authoritative: we keep the PE and send our
//! ADD_PE, which the peer judges by the rule above (it holds no association, or an older
//! registration: it re-labels; at most one answer comes back from a near-tie).
//!
//! A peer's ADD_PE that is its answer to our table entry crossing ours is not a newer
//! registration ([`crossing_window`]: decided like a near-tie; found by the netns chaos
//! soak). Arrival time orders registrations only within one incarnation of a peer: an
//! ADD_PE a peer queued before we declared it dead (e.g. the PE's registration there just
//! before a partition, older than the registration here that followed our takeover) must
//! never arrive afterwards. So a peer declared dead has every ENRP association it was heard
//! on closed (`links.rs`, `close_peer_links`); once found again, its audit (table entries,
//! which never take a PE we hold) and its new HANDLE_UPDATEs are what counts; messages on
//! an association that was up before we declared the peer dead are ignored (`peers.rs`).
//!
//! A yield is undone when the owner we yielded to deletes the PE while it is still
//! registered here over the association it had when we yielded (`reclaim_yielded` in
//! `peers.rs`): e.g. a near-tie between two takeovers' H keep-alives won by the lower ID,
//! although the PE followed the higher one last; when the PE closes its association to
//! the lower one, that one's DEL_PE would remove the live PE everywhere. We take it back,
//! announce it and verify it by keep-alive. The same holds when our audit of that owner
//! finds it no longer lists the PE as its own (crossing yields: under load an ADD_PE can be
//! read more than [`CLAIM_TIE_WINDOW`] after it was sent, so the two sides may judge one
//! near-tie differently and both yield; each audit then purged the live PE — netns chaos
//! soak run 22).

use std::time::{Duration, Instant};

use asap::wire::{PeIdentifier, ServerId};

/// Registrations closer together than this are a tie, broken by the lower server ID. It
/// must exceed the one-way ENRP delay plus the registration processing time, so that both
/// registrars see the same tie.
pub const CLAIM_TIE_WINDOW: Duration = Duration::from_secs(1);

/// A peer's statement that a PE's home is `home`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Claim {
    /// The peer it came from.
    pub(super) peer: ServerId,
    /// The home it names.
    pub(super) home: ServerId,
    /// A HANDLE_UPDATE ADD_PE (sent on a registration), not a handle table entry.
    pub(super) registration: bool,
}

/// What to do with a peer's claim on a PE we hold over a live association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClaimVerdict {
    /// The claim is newer (or a near-tie won by the claimant's lower ID): re-label, silent.
    Yield,
    /// Near-tie and our ID is lower: keep the PE and send our ADD_PE to the claimant.
    KeepAndAnswer,
}

/// Judges a claim by `claimant` (the PE's home in the claim) arriving `now` on a PE whose
/// last registration here was at `ours`; `registration`: the claim is a HANDLE_UPDATE
/// (else a handle table entry, which never wins against our live association).
/// `(ours, now)`; with takeover suggestion on, `suggestion` is the PE's identifier and a
/// near-tie goes to the better home by [`better_home`]'s metric instead of the lower ID (the
/// old home suggested that registrar, whose registration follows its own by milliseconds).
///
/// `crossing`: we answered this claimant's table entry for the PE with our ADD_PE within
/// [`crossing_window`], so its ADD_PE may be its own answer to our table entry rather than
/// a registration (both sides held the PE over an association and audited each other at
/// once, e.g. after a partition healed, one of the associations being a stale adoption).
/// Judged as a registration, each side would yield to the other's answer: the PE swapped
/// owners and both audits purged it until its next re-registration (found by the netns
/// chaos soak). A crossing is decided like a near-tie, so exactly one side keeps the PE.
pub(super) fn judge_claim(
    me: ServerId,
    claimant: ServerId,
    (ours, now): (Instant, Instant),
    registration: bool,
    suggestion: Option<PeIdentifier>,
    crossing: bool,
) -> ClaimVerdict {
    if !registration {
        return ClaimVerdict::KeepAndAnswer;
    }
    let recent = crossing || now.saturating_duration_since(ours) < CLAIM_TIE_WINDOW;
    let we_win_tie = match suggestion {
        Some(pe) => (me ^ pe) > (claimant ^ pe),
        None => me < claimant,
    };
    if recent && we_win_tie {
        ClaimVerdict::KeepAndAnswer
    } else {
        ClaimVerdict::Yield
    }
}

/// How long after answering a peer's table entry with our ADD_PE a HANDLE_UPDATE from that
/// peer for the same PE counts as crossing answers ([`judge_claim`]): the peer audits us on
/// our next PRESENCE, so its answer comes within a heartbeat cycle, plus
/// [`CLAIM_TIE_WINDOW`] for the delays. A real registration at the peer within this window
/// is decided like a near-tie; the PE's next re-registration settles it.
pub(super) fn crossing_window(heartbeat_cycle: Duration) -> Duration {
    heartbeat_cycle + CLAIM_TIE_WINDOW
}

/// Takeover suggestion (draft-dreibholz-rserpool-enrp-takeover; rsplib
/// `peerListManagementGetUsefulPeerForPE`): the peer that is a better home for PE `pe`
/// than we are — the one with the largest `server ID XOR PE identifier`, if larger than
/// ours. The metric is rsplib's, so that mixed clusters agree on where a PE belongs; it
/// spreads PEs over the registrars by identifier. `None`: we are the best.
pub(super) fn better_home(
    me: ServerId,
    pe: PeIdentifier,
    peers: impl IntoIterator<Item = ServerId>,
) -> Option<ServerId> {
    let mut best = (me ^ pe, None);
    for p in peers {
        if p != 0 && p != me && (p ^ pe) > best.0 {
            best = (p ^ pe, Some(p));
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Action, AssocId, CoreConfig, Input, Registrar};
    use asap::transport::TransportKind;
    use asap::wire::asap_msg::Registration;
    use asap::wire::enrp_msg::HandleUpdate;
    use asap::wire::{
        EnrpMessage, Message, PoolElementInfo, Protocol, TransportParameter, TransportUse,
        UpdateAction,
    };
    use rserpool_tests::enrp_msgs::{presence, sctp_pe, update, POOL};
    use std::net::SocketAddr;

    const ME: ServerId = 5;

    /// PE 0x42 of home `home`.
    fn element(home: ServerId) -> PoolElementInfo {
        sctp_pe(0x42, home)
    }

    /// From the first peer (127.0.0.7: peer 7, or the one [`suggesting`] knows first).
    fn peer_msg(r: &mut Registrar, now: Instant, m: impl Into<Message>) -> Vec<Action> {
        r.handle_datagram(now, peer_addr(0), &m.into())
    }

    /// Who owns PE 0x42, and over which of our associations (if ours).
    fn holder(r: &Registrar) -> (ServerId, Option<AssocId>) {
        let e = r
            .handlespace()
            .get(&POOL.into(), 0x42)
            .expect("PE 0x42 known");
        (e.owner(), e.connection())
    }

    /// How many HANDLE_UPDATEs were sent to peers ([`t_bits`]).
    fn updates_sent(out: &[Action]) -> usize {
        t_bits(out).len()
    }

    /// A registrar (ME = 5) with peer 7 and PE 0x42 registered here over association 1 at
    /// the returned time.
    fn with_registered_pe() -> (Registrar, Instant) {
        let now = Instant::now();
        let mut c = CoreConfig::new(ME);
        c.peering.enabled = true;
        c.peering.unicast = crate::core::PeerTransport::Datagrams;
        // The peer of these tests is allowed (issue 13: only allowed peers are heard).
        c.security.peer_allow = vec![crate::core::PeerAllow::Net(
            "127.0.0.0/8".parse().expect("lit"),
        )];
        let mut r = Registrar::new(c, now);
        peer_msg(&mut r, now, presence(7, 0xFFFF));
        register_from(&mut r, now, 1, "10.0.0.1:5000");
        (r, now)
    }

    /// `peer`'s ADD_PE to ME for PE 0x42, claiming it as its own.
    fn claim_by(peer: ServerId) -> HandleUpdate {
        update(peer, ME, UpdateAction::AddPe, element(peer))
    }

    /// The PE moved to peer 7 (its ADD_PE is newer than our registration): we re-label
    /// it silently, and the loss of our stale association no longer removes it. Before,
    /// we answered with our own ADD_PE (and 7 did the same, forever).
    #[test]
    fn newer_claim_is_yielded_to_without_an_answer() {
        let (mut r, t) = with_registered_pe();
        let later = t + Duration::from_secs(3);
        let out = peer_msg(&mut r, later, claim_by(7));
        assert_eq!(updates_sent(&out), 0);
        assert_eq!(holder(&r), (7, None));
        r.handle(later, Input::Disconnected { assoc: 1 });
        assert_eq!(holder(&r).0, 7, "still there");
        // A re-registration over a (new) association of ours takes it back, announced.
        let out = register_from(&mut r, later, 2, "10.0.0.1:5001");
        assert_eq!(updates_sent(&out), 1);
        assert_eq!(holder(&r), (ME, Some(2)));
    }

    /// A handle table entry is not a registration (e.g. a copy the peer took over while
    /// partitioned from us and could not verify): we keep the PE we hold and answer once.
    #[test]
    fn table_entry_does_not_take_a_pe_we_hold() {
        let (mut r, t) = with_registered_pe();
        let table = asap::wire::enrp_msg::HandleTableResponse {
            reject: false,
            more: false,
            sender: 7,
            receiver: ME,
            pools: vec![asap::wire::PoolEntry {
                pool_handle: "P".into(),
                pool_elements: vec![element(7)],
            }],
        };
        // The mentor download from 7 started when 7 was first heard.
        let out = peer_msg(&mut r, t + Duration::from_secs(3), table);
        assert_eq!(updates_sent(&out), 1);
        assert_eq!(holder(&r), (ME, Some(1)));
    }

    /// Near-tie: our registration is fresh and our ID (5) is lower than 7's: we keep it
    /// and answer once.
    #[test]
    fn near_tie_is_kept_by_the_lower_id_with_one_answer() {
        let (mut r, t) = with_registered_pe();
        let out = peer_msg(&mut r, t + Duration::from_millis(100), claim_by(7));
        assert_eq!(updates_sent(&out), 1);
        assert_eq!(holder(&r), (ME, Some(1)));
    }

    #[test]
    fn newest_registration_wins_near_ties_go_to_the_lower_id() {
        let t = Instant::now();
        let later = t + CLAIM_TIE_WINDOW;
        let soon = t + CLAIM_TIE_WINDOW / 2;
        // (our ID, claimant's ID, when the claim comes, a registration?, verdict)
        let cases = [
            // Our registration is old: any claimant wins.
            (1, 9, later, true, ClaimVerdict::Yield),
            (9, 1, later, true, ClaimVerdict::Yield),
            // Near-tie: the lower ID keeps it.
            (1, 9, soon, true, ClaimVerdict::KeepAndAnswer),
            (9, 1, soon, true, ClaimVerdict::Yield),
            // A table entry never wins against our association.
            (9, 1, later, false, ClaimVerdict::KeepAndAnswer),
        ];
        for (me, claimant, at, registration, verdict) in cases {
            assert_eq!(
                judge_claim(me, claimant, (t, at), registration, None, false),
                verdict,
                "{me} vs {claimant}, registration {registration}"
            );
        }
    }

    // ---- Takeover suggestion (HANDLE_UPDATE T bit, issue 14 item 9) -------------------

    /// Where the suggested PE's process listens (its ASAP transport as its home recorded it).
    fn pe_transport() -> TransportParameter {
        TransportParameter::Sctp {
            port: 4000,
            transport_use: TransportUse::DataOnly,
            addresses: vec!["10.0.0.1".parse().expect("lit")],
        }
    }

    /// A registrar `me` with takeover suggestion `on` that knows peers `peers` (each at
    /// 127.0.0.<k+7>:9901 by a PRESENCE).
    fn suggesting(me: ServerId, on: bool, peers: &[ServerId]) -> (Registrar, Instant) {
        let now = Instant::now();
        let mut c = CoreConfig::new(me);
        c.peering.enabled = true;
        c.peering.unicast = crate::core::PeerTransport::Datagrams;
        c.peering.takeover_suggestion = on;
        c.security.peer_allow = vec![crate::core::PeerAllow::Net(
            "127.0.0.0/8".parse().expect("lit"),
        )];
        let mut r = Registrar::new(c, now);
        for (k, p) in peers.iter().enumerate() {
            r.handle_datagram(now, peer_addr(k), &presence(*p, 0xFFFF).into());
        }
        (r, now)
    }

    /// [`suggesting`] with PE 0x42 registered here over association 1 at the returned time.
    fn holding(me: ServerId, on: bool, peers: &[ServerId]) -> (Registrar, Instant) {
        let (mut r, t) = suggesting(me, on, peers);
        register_here(&mut r, t, 1);
        (r, t)
    }

    fn peer_addr(k: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 7 + k as u8], 9901))
    }

    /// The HANDLE_UPDATEs sent: (receiver, T bit).
    fn t_bits(out: &[Action]) -> Vec<(ServerId, bool)> {
        out.iter()
            .filter_map(|a| match a {
                Action::PeerSend {
                    message: Message::Enrp(EnrpMessage::HandleUpdate(u)),
                    ..
                } => Some((u.receiver, u.takeover_suggested)),
                _ => None,
            })
            .collect()
    }

    /// PE 0x42 registers at `r` over a new association `assoc` at `now`.
    fn register_here(r: &mut Registrar, now: Instant, assoc: u64) -> Vec<Action> {
        register_from(r, now, assoc, "10.0.0.1:4000")
    }

    /// PE 0x42 registers at `r` over a new association `assoc` from `at` at `now`.
    fn register_from(r: &mut Registrar, now: Instant, assoc: u64, at: &str) -> Vec<Action> {
        let at = at.parse().expect("lit");
        r.handle(
            now,
            Input::connected(assoc, Protocol::Asap, at, TransportKind::Sctp),
        );
        let reg: Message = Registration {
            pool_handle: "P".into(),
            pool_element: element(0),
        }
        .into();
        r.handle_message(now, assoc, &reg)
    }

    #[test]
    fn better_home_is_rsplibs_xor_metric() {
        // 0x10 ^ 0x0F = 0x1F; 0x20 ^ 0x0F = 0x2F (better); 0x01 ^ 0x0F = 0x0E.
        assert_eq!(better_home(0x10, 0x0F, [0x20, 0x01]), Some(0x20));
        assert_eq!(
            better_home(0x20, 0x0F, [0x10, 0x01]),
            None,
            "we are the best"
        );
        assert_eq!(
            better_home(0x10, 0x0F, [0, 0x10]),
            None,
            "no ID 0, not ourselves"
        );
        // The near-tie rule with the option on follows the same metric, both ways.
        let t = Instant::now();
        let soon = (t, t + CLAIM_TIE_WINDOW / 2);
        assert_eq!(
            judge_claim(0x10, 0x20, soon, true, Some(0x0F), false),
            ClaimVerdict::Yield
        );
        assert_eq!(
            judge_claim(0x20, 0x10, soon, true, Some(0x0F), false),
            ClaimVerdict::KeepAndAnswer
        );
    }

    /// Our ADD_PE for a PE registering here carries T to the one better peer only (ME = 5:
    /// 5 ^ 0x42 = 0x47; peer 7: 0x45, worse; peer 0x80: 0xC2, better), and none without
    /// the option.
    #[test]
    fn add_pe_carries_t_to_the_better_peer_only() {
        let (mut r, t) = suggesting(ME, true, &[7, 0x80]);
        let mut sent = t_bits(&register_here(&mut r, t, 1));
        sent.sort();
        assert_eq!(sent, vec![(7, false), (0x80, true)]);
        let (mut r, t) = suggesting(ME, false, &[7, 0x80]);
        let mut sent = t_bits(&register_here(&mut r, t, 1));
        sent.sort();
        assert_eq!(sent, vec![(7, false), (0x80, false)]);
        // No better peer: no T.
        let (mut r, t) = suggesting(ME, true, &[7]);
        assert_eq!(t_bits(&register_here(&mut r, t, 1)), vec![(7, false)]);
    }

    fn suggested_add(home: ServerId, sender: ServerId, me: ServerId) -> HandleUpdate {
        let mut el = element(home);
        el.asap_transport = Some(pe_transport());
        HandleUpdate {
            takeover_suggested: true,
            ..update(sender, me, UpdateAction::AddPe, el)
        }
    }

    /// The suggested registrar connects to the PE's ASAP transport and sends it the H-flag
    /// keep-alive without re-labelling anything; the PE's re-registration over that
    /// association makes it ours (announced without T: we are the best home).
    #[test]
    fn suggested_registrar_sends_the_h_keep_alive_and_gets_the_pe() {
        let me = 0x80;
        let (mut r, t) = suggesting(me, true, &[7]);
        let out = peer_msg(&mut r, t, suggested_add(7, 7, me));
        let connects: Vec<_> = out
            .iter()
            .filter_map(|a| match a {
                Action::Connect {
                    assoc,
                    protocol: Protocol::Asap,
                    to,
                    ..
                } => Some((*assoc, to.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(connects.len(), 1, "{out:?}");
        let (assoc, to) = connects[0].clone();
        assert_eq!(
            to,
            vec!["10.0.0.1:4000".parse::<SocketAddr>().expect("lit")]
        );
        assert_eq!(holder(&r).0, 7);
        // The same suggestion again while connecting: no second association.
        let again = peer_msg(&mut r, t, suggested_add(7, 7, me));
        assert!(!again.iter().any(|a| matches!(a, Action::Connect { .. })));
        let out = r.handle(
            t,
            Input::Connected {
                assoc,
                protocol: Protocol::Asap,
                peer_addrs: to.clone(),
                transport: TransportKind::Sctp,
            },
        );
        let h: Vec<_> = out
            .iter()
            .filter_map(|a| match a.sent() {
                Some((on, Message::Asap(asap::wire::AsapMessage::EndpointKeepAlive(k)))) => {
                    Some((on, k.home, k.server_id, k.pe_identifier))
                }
                _ => None,
            })
            .collect();
        assert_eq!(h, vec![(assoc, true, me, Some(0x42))]);
        // Still the peer's until the PE registers here.
        assert_eq!(holder(&r).0, 7);
        let reg: Message = Registration {
            pool_handle: "P".into(),
            pool_element: element(0),
        }
        .into();
        let out = r.handle_message(t, assoc, &reg);
        assert_eq!(t_bits(&out), vec![(7, false)]);
        assert_eq!(holder(&r), (me, Some(assoc)));
        // The association carries a PE: not aborted at the suggestion's deadline.
        let later = t + r.config().keep_alive_timeout + Duration::from_millis(1);
        let out = r.handle_timeout(later);
        assert!(!out
            .iter()
            .any(|a| matches!(a, Action::Abort { assoc: x, .. } if *x == assoc)));
    }

    /// A suggestion the PE does not follow: nothing changes hands, and the association is
    /// aborted after the keep-alive timeout.
    #[test]
    fn unfollowed_suggestion_is_aborted_after_the_keep_alive_timeout() {
        let me = 0x80;
        let (mut r, t) = suggesting(me, true, &[7]);
        let out = peer_msg(&mut r, t, suggested_add(7, 7, me));
        let Some(Action::Connect { assoc, to, .. }) = out
            .iter()
            .find(|a| matches!(a, Action::Connect { .. }))
            .cloned()
        else {
            panic!("no connect: {out:?}");
        };
        r.handle(
            t,
            Input::Connected {
                assoc,
                protocol: Protocol::Asap,
                peer_addrs: to,
                transport: TransportKind::Sctp,
            },
        );
        let before = t + r.config().keep_alive_timeout - Duration::from_millis(1);
        assert!(!r
            .handle_timeout(before)
            .iter()
            .any(|a| matches!(a, Action::Abort { .. })));
        let after = t + r.config().keep_alive_timeout;
        let out = r.handle_timeout(after);
        assert!(
            out.iter()
                .any(|a| matches!(a, Action::Abort { assoc: x, .. } if *x == assoc)),
            "{out:?}"
        );
        assert_eq!(holder(&r).0, 7);
    }

    /// T is ignored without the option, and from a peer that is not the PE's home.
    #[test]
    fn t_is_ignored_when_off_or_not_from_the_home() {
        let me = 0x80;
        let (mut r, t) = suggesting(me, false, &[7]);
        let out = peer_msg(&mut r, t, suggested_add(7, 7, me));
        assert!(!out.iter().any(|a| matches!(a, Action::Connect { .. })));
        let (mut r, t) = suggesting(me, true, &[7, 9]);
        let out = peer_msg(&mut r, t, suggested_add(9, 7, me));
        assert!(!out.iter().any(|a| matches!(a, Action::Connect { .. })));
    }

    /// The old home suggested 0x80 (better for 0x42) and the PE re-registers there within
    /// the tie window: with the option on we yield silently although our ID (5) is lower;
    /// without it, the lower ID keeps the PE and answers once.
    #[test]
    fn old_home_yields_a_near_tie_to_the_better_home() {
        // (takeover suggestion, our answers, the holder after the claim)
        for (on, answers, after) in [(true, 0, (0x80, None)), (false, 1, (ME, Some(1)))] {
            let (mut r, t) = holding(ME, on, &[0x80]);
            let out = peer_msg(&mut r, t + Duration::from_millis(50), claim_by(0x80));
            assert_eq!(updates_sent(&out), answers, "suggestion {on}");
            assert_eq!(holder(&r), after, "suggestion {on}");
        }
    }

    /// Both registrars hold the PE over an association (one a stale adoption) and audit each
    /// other at once after a heal: each answers the other's table entry with its ADD_PE.
    /// The answers cross; judged as registrations, both sides yielded and the PE was purged
    /// everywhere by the next audits (netns chaos soak, 2026-12-06). A crossing is a
    /// near-tie: the lower ID (5) keeps the PE and answers once more, the higher (0x80)
    /// yields silently.
    #[test]
    fn crossing_answers_to_table_entries_leave_exactly_one_owner() {
        for (me, peer, keeps) in [(ME, 0x80, true), (0x80, ME, false)] {
            let (mut r, t) = holding(me, false, &[peer]);
            let later = t + Duration::from_secs(5);
            let table = asap::wire::enrp_msg::HandleTableResponse {
                reject: false,
                more: false,
                sender: peer,
                receiver: me,
                pools: vec![asap::wire::PoolEntry {
                    pool_handle: "P".into(),
                    pool_elements: vec![element(peer)],
                }],
            };
            let out = peer_msg(&mut r, later, table);
            assert_eq!(updates_sent(&out), 1, "our answer to the table entry");
            // The peer's answer to our table entry crosses ours.
            let mut answer = claim_by(peer);
            answer.receiver = me;
            let out = peer_msg(&mut r, later + Duration::from_millis(200), answer);
            if keeps {
                assert_eq!(holder(&r), (me, Some(1)), "never lost");
                assert_eq!(updates_sent(&out), 1);
            } else {
                assert_eq!(holder(&r), (peer, None), "never lost");
                assert_eq!(updates_sent(&out), 0);
            }
        }
        // Outside the window the peer's ADD_PE is a newer registration again.
        let (mut r, t) = holding(ME, false, &[0x80]);
        let out = peer_msg(&mut r, t + Duration::from_secs(5), claim_by(0x80));
        assert_eq!(updates_sent(&out), 0);
        assert_eq!(holder(&r).0, 0x80);
    }

    /// Two takeovers' H keep-alives reach a PE 0.6 s apart: it registers at 3 (the lower
    /// ID) and then here (its home by its own status). 3's ADD_PE is a near-tie won by
    /// the lower ID, so we yield; then the PE closes its association to 3 and 3's DEL_PE
    /// comes. Before, that removed the live PE everywhere until its next re-registration
    /// (netns chaos soak, 7 PEs at once). The PE is still registered here over the
    /// association it had when we yielded: we take it back, announce it and verify it.
    #[test]
    fn delete_by_the_owner_we_yielded_to_returns_a_pe_still_registered_here() {
        let (mut r, t) = holding(ME, false, &[3]);
        let claim = claim_by(3);
        let out = r.handle_datagram(
            t + Duration::from_millis(400),
            peer_addr(0),
            &claim.clone().into(),
        );
        assert_eq!(updates_sent(&out), 0, "yielded to the lower ID");
        let e = r.handlespace().get(&"P".into(), 0x42).expect("kept");
        assert_eq!((e.owner(), e.connection()), (3, None));
        let mut delete = claim;
        delete.action = UpdateAction::DelPe;
        let out = r.handle_datagram(
            t + Duration::from_millis(700),
            peer_addr(0),
            &delete.clone().into(),
        );
        let e = r
            .handlespace()
            .get(&"P".into(), 0x42)
            .expect("live PE kept");
        assert_eq!((e.owner(), e.connection()), (ME, Some(1)));
        assert_eq!(updates_sent(&out), 1, "announced as ours");
        // Once the association is gone, a yielded PE's deletion removes it as usual.
        let later = t + Duration::from_secs(20);
        let mut claim = delete.clone();
        claim.action = UpdateAction::AddPe;
        r.handle_datagram(later, peer_addr(0), &claim.into());
        r.handle(later, Input::Disconnected { assoc: 1 });
        r.handle_datagram(later, peer_addr(0), &delete.into());
        assert!(r.handlespace().get(&"P".into(), 0x42).is_none());
    }

    /// Crossing yields (netns chaos soak run 22, machine load ~40): the PE registered at 3
    /// and, 1.2 s later, here (following our takeover's H keep-alive). 3's ADD_PE, on the
    /// wire before our registration, was read here just after it: a near-tie won by 3's
    /// lower ID, so we yielded; 3 read our ADD_PE more than the tie window after its own
    /// registration and yielded too. Neither listed the PE as its own, and each audit of
    /// the other purged it: the live PE was gone everywhere until its next re-registration.
    /// An audit in which the owner we yielded to no longer lists the PE is a deletion by
    /// it: the PE is still registered here over the association it had when we yielded,
    /// so we take it back, announce it and verify it (as for its DEL_PE).
    #[test]
    fn audit_by_the_owner_we_yielded_to_returns_a_pe_still_registered_here() {
        let (mut r, t) = suggesting(ME, false, &[3]);
        let empty = || asap::wire::enrp_msg::HandleTableResponse {
            reject: false,
            more: false,
            sender: 3,
            receiver: ME,
            pools: vec![],
        };
        // 3's (empty) mentor download is done.
        r.handle_datagram(t, peer_addr(0), &empty().into());
        register_here(&mut r, t, 1);
        let claim = claim_by(3);
        let soon = t + Duration::from_millis(400);
        let out = r.handle_datagram(soon, peer_addr(0), &claim.into());
        assert_eq!(updates_sent(&out), 0, "yielded to the lower ID");
        assert_eq!(holder(&r), (3, None));
        // 3's checksum no longer covers the PE: audit of 3's own PEs, and 3 lists none.
        let later = t + Duration::from_secs(2);
        let out = r.handle_datagram(later, peer_addr(0), &presence(3, 0x1234).into());
        assert!(out.iter().any(|a| matches!(
            a,
            Action::PeerSend {
                message: Message::Enrp(EnrpMessage::HandleTableRequest(h)),
                ..
            } if h.own_children_only
        )));
        let out = r.handle_datagram(later, peer_addr(0), &empty().into());
        assert_eq!(holder(&r), (ME, Some(1)), "the live PE is ours again");
        assert_eq!(updates_sent(&out), 1, "announced as ours");
    }
}
