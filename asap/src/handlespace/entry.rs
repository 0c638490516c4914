//! One PE as the handlespace stores it.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::wire::asap_msg::HandleResolutionResponse;
use crate::wire::{PoolElementInfo, ServerId};

use super::{ConnectionId, ReporterId};

/// At most this many distinct reporters are remembered per PE; further reporters still count
/// towards [`UnreachableCount::reports`]. Bounds memory under a report flood.
pub const MAX_TRACKED_REPORTERS: usize = 64;

/// Counters of ASAP_ENDPOINT_UNREACHABLE reports about one PE (RFC 5352;
/// MAX-BAD-PE-REPORT, asap/wire/INTEROP.md §5.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnreachableCount {
    /// All reports since the last (re-)registration.
    pub reports: u32,
    /// Distinct reporters among them (capped at [`MAX_TRACKED_REPORTERS`]).
    pub distinct_reporters: u32,
}

/// ENDPOINT_UNREACHABLE bookkeeping of one PE, allocated only once a report arrives (most
/// PEs never get one; keeping it out of line saves ~20 bytes per PE, BENCHMARKS.md
/// "Handlespace memory").
#[derive(Debug, Clone, Default)]
pub(super) struct Reports {
    reporters: BTreeMap<ReporterId, u32>,
    reports: u32,
}

/// A PE entry of the handlespace (RFC 5351 §2; RFC 5353 handlespace data).
///
/// Fields are read-only from outside: every change goes through
/// [`Handlespace`](super::Handlespace) so that its indexes stay consistent.
#[derive(Debug, Clone)]
pub struct PoolElementEntry {
    pub(super) element: PoolElementInfo,
    /// `element` encoded as a resolution answer carries it (kept in step with `element`
    /// by [`set_element`](Self::set_element) and [`set_home`](Self::set_home)).
    pub(super) answer: Box<[u8]>,
    pub(super) owner: ServerId,
    pub(super) connection: Option<ConnectionId>,
    pub(super) expiry: Option<Instant>,
    /// Unique per handlespace entry; tie-breaker of the timer index.
    pub(super) serial: u64,
    pub(super) last_update: Instant,
    /// `None` until the first unreachable report after the last (re-)registration.
    pub(super) reports: Option<Box<Reports>>,
}

impl PoolElementEntry {
    /// The PE parameter (user transport, policy values, registration life, ASAP
    /// transport). Its `home_server_id` always equals [`owner`](Self::owner).
    pub fn element(&self) -> &PoolElementInfo {
        &self.element
    }

    /// The Pool Element parameter as an ASAP_HANDLE_RESOLUTION_RESPONSE carries it
    /// (no ASAP transport, asap/wire/INTEROP.md §2), encoded when the PE was registered,
    /// updated or changed owner, for
    /// [`AnswerElement::Encoded`](crate::wire::asap_msg::AnswerElement::Encoded).
    /// `None` if the element cannot be encoded.
    pub fn answer_tlv(&self) -> Option<&[u8]> {
        (!self.answer.is_empty()).then_some(&*self.answer)
    }

    /// The encoding [`answer_tlv`](Self::answer_tlv) keeps (empty if it cannot be encoded).
    pub(super) fn encode_answer(element: &PoolElementInfo) -> Box<[u8]> {
        let mut b = bytes::BytesMut::new();
        match HandleResolutionResponse::encode_answer_element(element, &mut b) {
            Ok(()) => b.to_vec().into_boxed_slice(),
            Err(_) => Box::default(),
        }
    }

    /// Replaces the element and its answer encoding.
    pub(super) fn set_element(&mut self, element: PoolElementInfo) {
        self.answer = Self::encode_answer(&element);
        self.element = element;
    }

    /// Sets the home server of the element (and in its answer encoding).
    pub(super) fn set_home(&mut self, home: ServerId) {
        self.element.home_server_id = home;
        self.answer = Self::encode_answer(&self.element);
    }

    /// The home ENRP server (PR-H) owning this PE.
    pub fn owner(&self) -> ServerId {
        self.owner
    }

    /// The ASAP association the PE registered over (`None` for PEs learned via ENRP).
    pub fn connection(&self) -> Option<ConnectionId> {
        self.connection
    }

    /// When the registration expires (`None`: infinite life).
    pub fn expiry(&self) -> Option<Instant> {
        self.expiry
    }

    /// Time of the last registration or re-registration.
    pub fn last_update(&self) -> Instant {
        self.last_update
    }

    /// Unreachable report counters.
    pub fn unreachable(&self) -> UnreachableCount {
        self.reports
            .as_deref()
            .map_or_else(UnreachableCount::default, |r| UnreachableCount {
                reports: r.reports,
                distinct_reporters: r.reporters.len() as u32,
            })
    }

    pub(super) fn report(&mut self, reporter: ReporterId) -> UnreachableCount {
        let r = self.reports.get_or_insert_with(Box::default);
        r.reports = r.reports.saturating_add(1);
        if let Some(c) = r.reporters.get_mut(&reporter) {
            *c = c.saturating_add(1);
        } else if r.reporters.len() < MAX_TRACKED_REPORTERS {
            r.reporters.insert(reporter, 1);
        }
        self.unreachable()
    }
}
