//! Proxy-side receiver for daemon connections (used by `proxy-pe` and by the tests).
//!
//! ```no_run
//! # async fn demo() -> Result<(), legacy_protocol::ProtocolError> {
//! use legacy_protocol::link::DaemonKeys;
//! use legacy_protocol::receiver::{DaemonListener, StatusTable};
//! let keys = DaemonKeys::hmac([("legacy-1".to_string(), legacy_protocol::auth::Key::generate())]);
//! let listener = DaemonListener::bind("0.0.0.0:7100").await?;
//! let mut conn = listener.accept(&keys).await?; // handshake, checks the Hello's tag
//! let mut table = StatusTable::new(conn.hello().clone());
//! while let Some(msg) = conn.next_message().await? {
//!     table.apply(&msg)?; // keeps the per-daemon application table exact
//! }
//! # Ok(()) }
//! ```
//!
//! A server should not run the handshake inside its accept loop (a silent peer would hold
//! it): accept with [`DaemonListener::accept_tcp`] and run [`DaemonConnection::handshake`]
//! in a task of its own, under a timeout, as `proxy-pe` does.
//!
//! [`DaemonConnection::next_message`] is cancel-safe (bytes are buffered in the connection),
//! so it can sit in a `tokio::select!` next to timers and other connections.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

use crate::link::{accept_daemon, DaemonKeys, Link};
use crate::{
    AppStatus, ConfigPush, DaemonFrame, DaemonMessage, Hello, ProtocolError, ProxyMessage,
};

/// Listens for daemon connections.
#[derive(Debug)]
pub struct DaemonListener {
    listener: TcpListener,
}

impl DaemonListener {
    /// Binds the listener.
    pub async fn bind<A: ToSocketAddrs>(addr: A) -> Result<Self, ProtocolError> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, ProtocolError> {
        Ok(self.listener.local_addr()?)
    }

    /// Accepts one TCP connection without reading from it (the handshake runs elsewhere).
    pub async fn accept_tcp(&self) -> Result<(TcpStream, SocketAddr), ProtocolError> {
        Ok(self.listener.accept().await?)
    }

    /// Accepts one daemon connection and runs its handshake (for tests and simple tools;
    /// a server runs the handshake in its own task, see the module documentation).
    pub async fn accept(&self, keys: &DaemonKeys) -> Result<DaemonConnection, ProtocolError> {
        let (stream, peer) = self.accept_tcp().await?;
        DaemonConnection::handshake(stream, peer, keys).await
    }
}

/// One accepted daemon connection after its authenticated Hello.
#[derive(Debug)]
pub struct DaemonConnection {
    link: Link,
    peer: SocketAddr,
    hello: Hello,
    next_seq: u64,
}

impl DaemonConnection {
    /// Runs the receiving side of the handshake on an accepted stream
    /// ([`crate::link::accept_daemon`]): the identity in [`hello`](Self::hello) is the one
    /// whose key the daemon proved.
    pub async fn handshake(
        stream: TcpStream,
        peer: SocketAddr,
        keys: &DaemonKeys,
    ) -> Result<Self, ProtocolError> {
        let (link, hello) = accept_daemon(stream, peer, keys).await?;
        Ok(Self {
            link,
            peer,
            hello,
            next_seq: 1,
        })
    }

    /// The daemon's Hello.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// The daemon's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Next message after the Hello; `Ok(None)` when the daemon closed the connection.
    /// Checks the tag and the per-connection frame sequence (`seq`). Cancel-safe.
    pub async fn next_message(&mut self) -> Result<Option<DaemonMessage>, ProtocolError> {
        let Some(f) = self.link.recv::<DaemonFrame>().await? else {
            return Ok(None);
        };
        if f.seq != self.next_seq {
            return Err(ProtocolError::Violation(format!(
                "frame seq {} where {} was expected",
                f.seq, self.next_seq
            )));
        }
        self.next_seq += 1;
        Ok(Some(f.msg))
    }

    /// Sends a configuration push (seed 003 \[32\]), tagged like every frame; the answer
    /// arrives later as a [`DaemonMessage::ConfigAck`] from
    /// [`next_message`](Self::next_message).
    pub async fn push_config(
        &mut self,
        version: u64,
        config_toml: &str,
    ) -> Result<(), ProtocolError> {
        let msg = ProxyMessage::ConfigPush(ConfigPush {
            version,
            config_toml: config_toml.into(),
        });
        self.link.send(&msg).await
    }
}

/// The proxy's copy of one daemon's state, maintained from Snapshot and Delta messages
/// (seed 000 \[0026\]: "each server process maintains a copy of the data sent by the agent
/// processes").
#[derive(Debug, Clone)]
pub struct StatusTable {
    /// The daemon's Hello.
    pub hello: Hello,
    /// Latest state sequence number applied.
    pub state_seq: u64,
    /// Latest configuration version seen.
    pub config_version: u64,
    /// Applications by name.
    pub apps: BTreeMap<String, AppStatus>,
    /// True once a snapshot was applied (before that the table is empty, not "all down").
    pub synced: bool,
}

impl StatusTable {
    /// An empty table for the daemon that sent `hello`.
    pub fn new(hello: Hello) -> Self {
        let config_version = hello.config_version;
        Self {
            hello,
            state_seq: 0,
            config_version,
            apps: BTreeMap::new(),
            synced: false,
        }
    }

    /// Applies one message. A Delta before any Snapshot, or one whose `state_seq` is not the
    /// next one, is a protocol violation (the daemon resyncs with a Snapshot instead of
    /// leaving gaps). Heartbeats and acks only update the version.
    pub fn apply(&mut self, msg: &DaemonMessage) -> Result<(), ProtocolError> {
        match msg {
            DaemonMessage::Hello(h) => {
                *self = Self::new(h.clone());
            }
            DaemonMessage::Snapshot(s) => {
                self.apps = s.apps.iter().map(|a| (a.name.clone(), a.clone())).collect();
                self.state_seq = s.state_seq;
                self.config_version = s.config_version;
                self.synced = true;
            }
            DaemonMessage::Delta(d) => {
                if !self.synced || self.state_seq.checked_add(1) != Some(d.state_seq) {
                    return Err(ProtocolError::Violation(format!(
                        "delta state_seq {} after state {} (synced: {})",
                        d.state_seq, self.state_seq, self.synced
                    )));
                }
                for a in &d.changed {
                    self.apps.insert(a.name.clone(), a.clone());
                }
                for r in &d.removed {
                    self.apps.remove(r);
                }
                self.state_seq = d.state_seq;
                self.config_version = d.config_version;
            }
            DaemonMessage::Heartbeat(h) => {
                self.config_version = h.config_version;
            }
            DaemonMessage::ConfigAck(a) => {
                self.config_version = a.active_version;
            }
        }
        Ok(())
    }

    /// Names of the applications currently running, sorted.
    pub fn running(&self) -> Vec<&str> {
        self.apps
            .values()
            .filter(|a| a.running)
            .map(|a| a.name.as_str())
            .collect()
    }
}
