//! `rsp resolve`: one handle resolution (RFC 5352 §2.2.5 ASAP_HANDLE_RESOLUTION, answered
//! by §2.2.6) through the `asap` pool user API ([`asap::pu::PoolUser::refresh`]), so that
//! the tool sees what an application's pool user sees.

use std::net::SocketAddr;
use std::time::Duration;

use asap::pu::{PoolUser, PoolUserConfig};
use asap::transport::TransportKind;

use crate::PeView;

/// Why a resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveFailure {
    /// The pool user API failed (no registrar reachable, pool not found, ...).
    #[error("resolving `{pool}` at {registrar}: {reason}")]
    Pu {
        /// The pool handle.
        pool: String,
        /// The registrar's ASAP endpoint.
        registrar: SocketAddr,
        /// The API's error.
        reason: String,
    },
    /// No answer within the timeout.
    #[error("no answer resolving `{pool}` at {registrar} within {timeout:?}: is it a registrar's ASAP port (3863 by default)? try --transport tcp or sctp, or raise --timeout")]
    Timeout {
        /// The pool handle.
        pool: String,
        /// The registrar's ASAP endpoint.
        registrar: SocketAddr,
        /// The timeout.
        timeout: Duration,
    },
}

/// Resolves `pool` at the registrar whose ASAP endpoint is `registrar`; the PEs the
/// registrar selected, in its order.
pub async fn resolve(
    pool: &str,
    registrar: SocketAddr,
    kind: TransportKind,
    timeout: Duration,
) -> Result<Vec<PeView>, ResolveFailure> {
    let mut cfg = PoolUserConfig::tcp();
    cfg.registrar_transport = kind;
    cfg.pu.link.static_registrars = vec![vec![registrar]];
    let fail = |reason: String| ResolveFailure::Pu {
        pool: pool.to_string(),
        registrar,
        reason,
    };
    let pu = PoolUser::start(cfg)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let pes = tokio::time::timeout(timeout, pu.refresh(pool))
        .await
        .map_err(|_| ResolveFailure::Timeout {
            pool: pool.to_string(),
            registrar,
            timeout,
        })?
        .map_err(|e| fail(e.to_string()))?;
    Ok(pes.iter().map(|pe| PeView::of(pool, pe)).collect())
}
