//! Proxy-side receiver for daemon connections (used by `proxy-pe` and by the tests).
//!
//! ```no_run
//! # async fn demo() -> Result<(), legacy_protocol::ProtocolError> {
//! use legacy_protocol::receiver::{DaemonListener, StatusTable};
//! let listener = DaemonListener::bind("0.0.0.0:7100").await?;
//! let mut conn = listener.accept().await?; // reads and checks the Hello
//! let mut table = StatusTable::new(conn.hello().clone());
//! while let Some(msg) = conn.next_message().await? {
//!     table.apply(&msg)?; // keeps the per-daemon application table exact
//! }
//! # Ok(()) }
//! ```
//!
//! [`DaemonConnection::next_message`] is cancel-safe (bytes are buffered in the connection),
//! so it can sit in a `tokio::select!` next to timers and other connections.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

use crate::{
    encode_frame, AppStatus, ConfigPush, DaemonFrame, DaemonMessage, FrameDecoder, Hello,
    ProtocolError, ProxyMessage, PROTOCOL_VERSION,
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

    /// Accepts one daemon connection and reads its [`Hello`]. Fails if the first frame is
    /// not a Hello or the protocol version differs (the connection is then dropped). Wrap
    /// in a timeout to bound how long a silent peer may hold the accept.
    pub async fn accept(&self) -> Result<DaemonConnection, ProtocolError> {
        let (stream, peer) = self.listener.accept().await?;
        DaemonConnection::handshake(stream, peer).await
    }
}

/// One accepted daemon connection after its Hello.
#[derive(Debug)]
pub struct DaemonConnection {
    stream: TcpStream,
    peer: SocketAddr,
    hello: Hello,
    decoder: FrameDecoder,
    next_seq: u64,
    buf: Vec<u8>,
}

impl DaemonConnection {
    /// Runs the receiving side of the handshake on an accepted stream.
    pub async fn handshake(stream: TcpStream, peer: SocketAddr) -> Result<Self, ProtocolError> {
        let mut c = Self {
            stream,
            peer,
            hello: Hello {
                protocol_version: 0,
                daemon_id: String::new(),
                instance: 0,
                config_version: 0,
                poll_interval_ms: 0,
                heartbeat_interval_ms: 0,
                software: String::new(),
            },
            decoder: FrameDecoder::new(),
            next_seq: 0,
            buf: vec![0u8; 8192],
        };
        match c.next_frame().await? {
            Some(DaemonMessage::Hello(h)) if h.protocol_version == PROTOCOL_VERSION => {
                c.hello = h;
                Ok(c)
            }
            Some(DaemonMessage::Hello(h)) => Err(ProtocolError::Violation(format!(
                "daemon speaks protocol version {}, this receiver {PROTOCOL_VERSION}",
                h.protocol_version
            ))),
            Some(other) => Err(ProtocolError::Violation(format!(
                "first frame is not hello: {other:?}"
            ))),
            None => Err(ProtocolError::Violation("closed before hello".into())),
        }
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
    /// Checks the per-connection frame sequence (`seq`) and fails on a gap. Cancel-safe.
    pub async fn next_message(&mut self) -> Result<Option<DaemonMessage>, ProtocolError> {
        self.next_frame().await
    }

    async fn next_frame(&mut self) -> Result<Option<DaemonMessage>, ProtocolError> {
        loop {
            if let Some(f) = self.decoder.next_frame::<DaemonFrame>()? {
                if f.seq != self.next_seq {
                    return Err(ProtocolError::Violation(format!(
                        "frame seq {} where {} was expected",
                        f.seq, self.next_seq
                    )));
                }
                self.next_seq += 1;
                return Ok(Some(f.msg));
            }
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                if self.decoder.buffered() > 0 {
                    return Err(ProtocolError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
                return Ok(None);
            }
            self.decoder.push(&self.buf[..n]);
        }
    }

    /// Sends a configuration push (seed 003 \[32\]); the answer arrives later as a
    /// [`DaemonMessage::ConfigAck`] from [`next_message`](Self::next_message).
    pub async fn push_config(
        &mut self,
        version: u64,
        config_toml: &str,
    ) -> Result<(), ProtocolError> {
        let msg = ProxyMessage::ConfigPush(ConfigPush {
            version,
            config_toml: config_toml.into(),
        });
        let bytes = encode_frame(&msg)?;
        tokio::io::AsyncWriteExt::write_all(&mut self.stream, &bytes).await?;
        Ok(())
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
                if !self.synced || d.state_seq != self.state_seq + 1 {
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
