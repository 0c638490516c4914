//! A stateful pool element whose state survives a failover: a running total per session,
//! carried in the ASAP_COOKIE (RFC 5351 §2.5) and restored by whichever PE the session
//! fails over to.
//!
//! A request is a line `<id> <n>` (`id` counting up from 1, `n` an integer to add); the
//! reply is `<id> total=<total>`. Before every reply the PE sends a cookie
//! `total=<total>;last=<id>`. Why in that order, and why the id:
//!
//! * `Session::request` re-sends a request the failed PE did not answer (at least once).
//!   The failed PE may have applied it already. Sending the cookie **before** the reply
//!   means the PU's last cookie always includes every request that was applied and
//!   answered — and possibly the one that was applied and not answered.
//! * The new PE restores `total` and `last` from the COOKIE_ECHO, which arrives before the
//!   re-sent request. A request whose id is not above `last` was applied already: it is
//!   answered with the current total and not applied again. So the total counts every
//!   request exactly once, although requests are delivered at least once.
//!
//! The cookie is not signed here; a real service would add an HMAC (the PU must not be
//! able to forge state). Self-contained: copy it out and add `asap`, `tokio` and
//! `tracing-subscriber` to your dependencies. Try it with two PEs and `echo_pu`:
//!
//! ```text
//! cargo run -p enrp-server -- --transport tcp --asap 127.0.0.1:3863 --enrp off &
//! cargo run -p asap --example counter_pe -- 127.0.0.1:3863 &
//! cargo run -p asap --example counter_pe -- 127.0.0.1:3863 &
//! cargo run -p asap --example echo_pu -- --registrar 127.0.0.1:3863 --transport tcp --pool CounterPool
//! 1 5            -> 1 total=5
//! 2 10           -> 2 total=15      (now kill the PE that logged "session opened")
//! 3 1            -> 3 total=16      (answered by the other PE, state restored)
//! ```

use asap::pe::PoolElement;
use asap::session::{ServerEvent, ServerSession, SessionError};

/// Session state: the running total and the id of the last request applied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct State {
    total: i64,
    last: u64,
}

impl State {
    fn cookie(&self) -> Vec<u8> {
        format!("total={};last={}", self.total, self.last).into_bytes()
    }

    fn from_cookie(c: &[u8]) -> Option<State> {
        let text = std::str::from_utf8(c).ok()?;
        let mut s = State::default();
        for kv in text.split(';') {
            match kv.split_once('=')? {
                ("total", v) => s.total = v.parse().ok()?,
                ("last", v) => s.last = v.parse().ok()?,
                _ => return None,
            }
        }
        Some(s)
    }

    /// Applies `<id> <n>` unless `id` was applied already; the reply text.
    fn apply(&mut self, request: &str) -> String {
        let mut it = request.split_whitespace();
        let (Some(Ok(id)), Some(Ok(n))) = (
            it.next().map(str::parse::<u64>),
            it.next().map(str::parse::<i64>),
        ) else {
            return format!("error: expected `<id> <n>`, got {request:?}");
        };
        if id > self.last {
            self.total = self.total.saturating_add(n);
            self.last = id;
        }
        format!("{id} total={}", self.total)
    }
}

async fn session(mut s: ServerSession) -> Result<(), SessionError> {
    eprintln!("session opened from {:?}", s.peer_addrs());
    let mut state = State::default();
    while let Some(ev) = s.recv().await? {
        match ev {
            ServerEvent::CookieEcho(c) => match State::from_cookie(&c) {
                Some(restored) => {
                    eprintln!("state restored from cookie: {restored:?}");
                    state = restored;
                }
                None => eprintln!("unreadable cookie ignored"),
            },
            ServerEvent::Data(d) => {
                let reply = state.apply(&String::from_utf8_lossy(&d));
                s.send_cookie(state.cookie()).await?;
                s.send(reply.into_bytes()).await?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let registrar = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3863".into());
    PoolElement::builder("CounterPool")
        .registrar(registrar.as_str())
        .serve(session)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
