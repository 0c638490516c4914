//! Request/response on a [`Session`] with re-sending after failover (issue 18), and the
//! typed [`SessionFailure`] of [`SessionEvent::Failed`].
//!
//! ## Delivery semantics: at least once
//!
//! [`Session::request`] and [`Session::request_pipelined`] assume the PE answers every
//! data message with exactly one data message, in order (an echo, an RPC). When the
//! serving PE fails (RFC 5351 §2.5), every request it had not answered is sent again to
//! the new PE, after the ASAP_COOKIE_ECHO with the old PE's last cookie. The failed PE may
//! have processed such a request before it died, so a request can be **processed more
//! than once** (but its reply is returned once). Hence:
//!
//! * make requests **idempotent** (a client-chosen request id the PE remembers, or
//!   operations that can be repeated: "set x to 5" rather than "add 5");
//! * keep per-session state in the **cookie**: the PE sends an ASAP_COOKIE
//!   ([`ServerSession::send_cookie`](super::ServerSession::send_cookie)) after each reply;
//!   the new PE receives it as
//!   [`ServerEvent::CookieEcho`](super::ServerEvent::CookieEcho) before the re-sent
//!   requests and restores the state from it (`examples/counter_pe.rs`). The cookie is
//!   not authenticated by the session layer: sign it if PUs are not trusted.
//!
//! Do not mix [`Session::send`]/[`Session::recv`] with the request calls on one session:
//! the request calls pair replies with requests by order.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::debug;

use super::{Session, SessionError, SessionEvent};

/// Why a session ended: the typed error the session task stopped with, carried by
/// [`SessionEvent::Failed`]. Its `Display` is the error's.
#[derive(Debug, Clone)]
pub struct SessionFailure(Arc<SessionError>);

impl SessionFailure {
    pub(super) fn new(e: SessionError) -> Self {
        SessionFailure(Arc::new(e))
    }

    /// The error that ended the session (e.g. [`SessionError::NoPoolElement`], or
    /// [`SessionError::PoolUser`] with [`PuError::Timeout`](crate::pu::PuError::Timeout)).
    pub fn error(&self) -> &SessionError {
        &self.0
    }

    /// The error by value ([`SessionError::Failed`] if this failure was cloned).
    pub fn into_error(self) -> SessionError {
        Arc::try_unwrap(self.0)
            .unwrap_or_else(|shared| SessionError::Failed(SessionFailure(shared)))
    }
}

impl fmt::Display for SessionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for SessionFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Equal when both carry the same error text (the errors wrap `io::Error`s, which have no
/// equality).
impl PartialEq for SessionFailure {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for SessionFailure {}

/// A data message sent by a request call and not answered yet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    /// Its index ([`Session::send`]).
    index: u64,
    /// Which request of the running call it answers; `None`: abandoned (timed out or its
    /// call was cancelled), its reply is dropped when it comes.
    slot: Option<usize>,
}

impl Session {
    /// The failovers that happened during request calls since the last call of this
    /// method (the request calls consume the [`SessionEvent::Failover`] events).
    pub fn take_failovers(&mut self) -> Vec<super::Failover> {
        std::mem::take(&mut self.failovers)
    }

    /// Sends one request and returns its reply, re-sending it after a failover (at least
    /// once, see the [module documentation](self)). Bounded by
    /// [`SessionConfig::request_timeout`](super::SessionConfig::request_timeout).
    pub async fn request(&mut self, request: impl Into<Bytes>) -> Result<Bytes, SessionError> {
        let mut r = self.request_pipelined([request.into()]).await?;
        r.pop().ok_or(SessionError::Closed)
    }

    /// Sends several requests at once (pipelined: without waiting for replies in between)
    /// and returns their replies in request order; the unanswered ones are re-sent after a
    /// failover (at least once). Bounded as a whole by
    /// [`SessionConfig::request_timeout`](super::SessionConfig::request_timeout).
    pub async fn request_pipelined(
        &mut self,
        requests: impl IntoIterator<Item = Bytes>,
    ) -> Result<Vec<Bytes>, SessionError> {
        // Requests of an earlier call that was cancelled (dropped future) are abandoned.
        for p in self.pending.iter_mut() {
            p.slot = None;
        }
        let requests: Vec<Bytes> = requests.into_iter().collect();
        let mut replies: Vec<Option<Bytes>> = vec![None; requests.len()];
        for (i, r) in requests.iter().enumerate() {
            let index = self.send(r.clone()).await?;
            self.pending.push_back(Pending {
                index,
                slot: Some(i),
            });
        }
        let timeout = self.request_timeout;
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut left = requests.len();
        while left > 0 {
            let ev = match deadline {
                Some(d) => match tokio::time::timeout_at(d, self.recv()).await {
                    Ok(ev) => ev,
                    Err(_) => {
                        for p in self.pending.iter_mut() {
                            p.slot = None;
                        }
                        return Err(SessionError::RequestTimeout {
                            after: timeout.unwrap_or(Duration::ZERO),
                            unanswered: left,
                        });
                    }
                },
                None => self.recv().await,
            };
            match ev {
                None => return Err(SessionError::Closed),
                Some(SessionEvent::Data(d)) => match self.pending.pop_front() {
                    Some(Pending { slot: Some(i), .. }) => {
                        replies[i] = Some(d);
                        left -= 1;
                    }
                    Some(Pending { slot: None, index }) => {
                        debug!(index, "reply to an abandoned request dropped")
                    }
                    None => debug!(len = d.len(), "data without a request dropped"),
                },
                Some(SessionEvent::Failover(f)) => {
                    // Everything sent before `resend_from` went to the failed PE; what is
                    // still pending of it got no reply: send it again, in order.
                    let (lost, kept): (VecDeque<Pending>, VecDeque<Pending>) = self
                        .pending
                        .drain(..)
                        .partition(|p| p.index < f.resend_from);
                    self.pending = kept;
                    let resend: Vec<usize> = lost.iter().filter_map(|p| p.slot).collect();
                    debug!(
                        resend = resend.len(),
                        to = format_args!("{:#010x}", f.to),
                        "failover: re-sending unanswered requests"
                    );
                    for i in resend {
                        let index = self.send(requests[i].clone()).await?;
                        self.pending.push_back(Pending {
                            index,
                            slot: Some(i),
                        });
                    }
                    self.failovers.push(f);
                }
                Some(SessionEvent::Failed(f)) => {
                    self.pending.clear();
                    return Err(f.into_error());
                }
            }
        }
        Ok(replies.into_iter().map(Option::unwrap_or_default).collect())
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("current_pe", &self.current_pe().map(|p| p.id))
            .field("pending_requests", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for super::SessionListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionListener")
            .field("kind", &self.kind())
            .field("addrs", &self.local_addrs().unwrap_or_default())
            .finish_non_exhaustive()
    }
}
