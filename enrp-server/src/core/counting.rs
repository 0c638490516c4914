//! How ASAP_ENDPOINT_UNREACHABLE reports add up to MAX-BAD-PE-REPORT (RFC 5353 §7;
//! asap/wire/INTEROP.md §5.3). README "Deviations from rsplib" explains the default.

use asap::handlespace::UnreachableCount;

/// What counts towards [`CoreConfig::max_bad_pe_reports`](super::CoreConfig).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnreachableCounting {
    /// Distinct reporter addresses (default): one PU, or a forger on one host, cannot remove
    /// a PE by repeating its report; a deployment with a single PU can never remove one.
    #[default]
    DistinctReporters,
    /// Every report counts, whoever sends it (rsplib): a single PU removes a PE after
    /// MAX-BAD-PE-REPORT reports.
    Raw,
}

impl UnreachableCounting {
    /// The count compared with MAX-BAD-PE-REPORT.
    pub fn count(self, c: UnreachableCount) -> u32 {
        match self {
            UnreachableCounting::DistinctReporters => c.distinct_reporters,
            UnreachableCounting::Raw => c.reports,
        }
    }
}
