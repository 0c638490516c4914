//! `legacy-protocol`: the daemon ↔ proxy status protocol (version 2), see
//! `legacy-daemon/PROTOCOL.md`. Both `legacy-daemon` (the sender) and `proxy-pe` (the
//! receiver, [`receiver`]) depend on this small crate, so the proxy does not build the
//! daemon's process-table code (procfs, regex).
//!
//! Seed 003 \[29\] step 183 says only that "the status of the application(s) is then provided
//! to proxy pool element 115 by daemon 141"; the transport and encoding are ours. Legacy
//! hosts may lack SCTP (seed 003 names no transport for this link), so the protocol runs over plain TCP:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                  Length (bytes of JSON, big endian)           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            UTF-8 JSON object (Length bytes) ...               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The daemon connects to the proxy. Daemon → proxy frames are [`DaemonFrame`] (a
//! per-connection sequence number `seq` plus a [`DaemonMessage`] tagged by `"type"`);
//! proxy → daemon frames are [`ProxyMessage`]. On every (re)connection the daemon sends
//! [`Hello`] then a full [`Snapshot`] before anything else (seed 000 \[0026\]:
//! a reconnecting agent first reports its whole state), then a [`Delta`] per status change and a [`Heartbeat`] every interval.
//! The proxy may push a new configuration ([`ConfigPush`], seed 003 \[32\] "dynamic
//! notification"); the daemon answers each push with a [`ConfigAck`].
//!
//! Version 2 authenticates the link (`PROTOCOL.md` §1.1, [`auth`]): after a two-frame
//! handshake in clear, every frame carries a 32-byte HMAC-SHA256 tag after its JSON body
//! (the length covers both). [`link`] runs the handshake and the tagged frames over TCP;
//! [`receiver`] is the proxy side.
//!
//! The framing here is pure (no I/O): [`encode_frame`] and [`FrameDecoder`] work on bytes.
//! The async helpers [`read_frame`] and [`write_frame`] wrap them for tokio streams (clear
//! frames only).

#![warn(missing_docs)]

pub mod auth;
pub mod link;
pub mod receiver;
#[cfg(feature = "test-support")]
pub mod test_support;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Protocol version carried in [`Hello::protocol_version`]. A receiver closes the connection
/// when the major version differs from the one it implements.
/// Version 2 added the authenticated handshake and frame tags ([`auth`]).
pub const PROTOCOL_VERSION: u16 = 2;

/// Largest JSON body accepted in one frame (1 MiB). A snapshot of a host with hundreds of
/// watched applications stays far below this; anything larger is treated as corruption.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Length of the frame header (a big-endian `u32` body length).
pub const FRAME_HEADER_LEN: usize = 4;

/// Errors of the framing layer.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The header announced more than [`MAX_FRAME_LEN`] bytes.
    #[error("frame length {0} exceeds the maximum of {MAX_FRAME_LEN} bytes")]
    FrameTooLarge(usize),
    /// The body was not a valid JSON message of the expected kind.
    #[error("malformed frame body: {0}")]
    Json(#[from] serde_json::Error),
    /// The stream failed or ended in the middle of a frame.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer did not follow the message order of `PROTOCOL.md` (e.g. no Hello first).
    #[error("protocol violation: {0}")]
    Violation(String),
    /// Authentication failed: bad tag, wrong key, unknown or mismatched identity.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The proxy refused the daemon in its handshake answer (`auth_refused`).
    #[error("refused by the proxy: {0}")]
    Refused(String),
    /// The handshake did not complete within its timeout.
    #[error("handshake timed out")]
    HandshakeTimeout,
}

/// One daemon → proxy frame: a per-connection sequence number plus the message.
///
/// `seq` starts at 0 with the [`Hello`] of each connection and grows by one per frame, so a
/// receiver detects loss or reordering in its own stack (TCP itself never reorders).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonFrame {
    /// Per-connection frame sequence number, 0 for the Hello.
    pub seq: u64,
    /// The message.
    #[serde(flatten)]
    pub msg: DaemonMessage,
}

/// Messages from the daemon to a proxy, tagged by `"type"` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DaemonMessage {
    /// First frame of every connection.
    Hello(Hello),
    /// Full status of every configured application (second frame of every connection, and
    /// again whenever the daemon cannot guarantee the proxy saw every delta).
    Snapshot(Snapshot),
    /// Status of the applications that changed since the previous state.
    Delta(Delta),
    /// Periodic liveness message.
    Heartbeat(Heartbeat),
    /// Answer to a [`ConfigPush`].
    ConfigAck(ConfigAck),
}

/// Messages from a proxy to the daemon, tagged by `"type"` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProxyMessage {
    /// A new daemon configuration (seed 003 \[32\] "dynamic notification").
    ConfigPush(ConfigPush),
}

/// `hello`: who is speaking, which protocol and which configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub protocol_version: u16,
    /// Daemon identity (config `daemon.id`, default the host name).
    pub daemon_id: String,
    /// Random identifier of this daemon process run; changes on every daemon restart so the
    /// proxy can tell a restart from a reconnect.
    pub instance: u64,
    /// Version of the configuration in force.
    pub config_version: u64,
    /// Poll interval in milliseconds (the proxy derives its staleness timeout from it).
    pub poll_interval_ms: u64,
    /// Heartbeat interval in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Daemon software version (`CARGO_PKG_VERSION`).
    pub software: String,
}

/// `snapshot`: the complete state. Replaces whatever the proxy held for this daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// State sequence number of this state (see [`Delta::state_seq`]).
    pub state_seq: u64,
    /// Configuration version the state was polled with.
    pub config_version: u64,
    /// Wall-clock time of the poll, milliseconds since the Unix epoch.
    pub taken_at_ms: u64,
    /// Every configured application, in configuration order.
    pub apps: Vec<AppStatus>,
}

/// `delta`: applications whose status changed, or that were removed from the configuration.
///
/// `state_seq` grows by exactly one per state change, across all proxies. On one connection
/// the first delta after a snapshot with `state_seq = n` has `state_seq = n + 1`, and so on;
/// a gap means the daemon's queue for this proxy overflowed, and the daemon then sends a new
/// [`Snapshot`] instead of the missing deltas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// State sequence number after applying this delta.
    pub state_seq: u64,
    /// Configuration version in force.
    pub config_version: u64,
    /// Wall-clock time of the poll, milliseconds since the Unix epoch.
    pub taken_at_ms: u64,
    /// New full status of each changed (or newly configured) application.
    pub changed: Vec<AppStatus>,
    /// Names of applications no longer configured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

/// `heartbeat`: sent every heartbeat interval whether or not anything changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Heartbeat counter on this connection, starting at 1.
    pub heartbeat_seq: u64,
    /// Latest state sequence number (a proxy holding less missed something).
    pub state_seq: u64,
    /// Configuration version in force.
    pub config_version: u64,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
}

/// `config_push`: proxy → daemon. The body is the complete configuration file in TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigPush {
    /// Version of this configuration. Must be greater than the daemon's current version; an
    /// equal version is acknowledged without re-applying (idempotent re-delivery, e.g. the
    /// same push via two proxies).
    pub version: u64,
    /// The configuration file text (same format as the file on disk).
    pub config_toml: String,
}

/// `config_ack`: daemon → proxy, answer to one [`ConfigPush`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigAck {
    /// The version that was pushed.
    pub version: u64,
    /// `true`: applied (or already in force). `false`: rejected, see `error`.
    pub accepted: bool,
    /// Version in force after handling the push.
    pub active_version: u64,
    /// Why the push was rejected (file/line/column/key like a local config error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Status of one configured application on this host (seed 003 \[29\]: "the status of the
/// application(s)"; seed 003 \[29\] step 181 for the reported figures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppStatus {
    /// Application name from the configuration (usually the pool handle it serves).
    pub name: String,
    /// At least one matching process exists (and, with `require_listen`, a port listens).
    pub running: bool,
    /// Number of matching processes.
    pub instances: u32,
    /// Their pids, ascending.
    pub pids: Vec<u32>,
    /// CPU use of all instances since the previous poll, in percent of one CPU.
    pub cpu_percent: f32,
    /// Resident set size of all instances, bytes.
    pub rss_bytes: u64,
    /// Service ports from the configuration with their observed state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortStatus>,
    /// Static load hints from the configuration, passed through for the proxy's policies.
    #[serde(default, skip_serializing_if = "LoadHints::is_empty")]
    pub load_hints: LoadHints,
    /// Address clients reach this application on, from the daemon configuration (`[[app]]
    /// host`, else `[daemon] advertise`). `None`: the proxy uses the address the daemon
    /// connected from. With the first of `ports` it lets the proxy add the server to its
    /// pooling table without a per-server entry (issue 19 item 2, seed 003 \[29\]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<std::net::IpAddr>,
    /// Start time of the oldest running instance, Unix milliseconds (from
    /// `/proc/PID/stat` field 22 and the boot time). The proxy counts the lifetime (seed
    /// 003 \[35\]) from it, so a proxy restart does not restart the work cycle (issue 19
    /// item 8). `None` when not running or not known (an older daemon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
}

impl AppStatus {
    /// `name` with the processes `pids`: running when there is one, no CPU, memory, port
    /// or load figures, no host and no start time (fill in what is known).
    pub fn new(name: impl Into<String>, pids: &[u32]) -> AppStatus {
        AppStatus {
            name: name.into(),
            running: !pids.is_empty(),
            instances: pids.len() as u32,
            pids: pids.to_vec(),
            cpu_percent: 0.0,
            rss_bytes: 0,
            ports: Vec::new(),
            load_hints: LoadHints::default(),
            host: None,
            started_at_ms: None,
        }
    }
}

/// A service port and what `/proc/net/tcp{,6}` says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    /// TCP port number.
    pub port: u16,
    /// A socket is in LISTEN state on this port (`None` if not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listening: Option<bool>,
    /// Number of ESTABLISHED connections with this local port (`None` if not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
}

/// Administrative load hints (seed 003 \[31\]: transaction count, load availability, number
/// of applications running concurrently). All optional; the proxy decides how to use them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadHints {
    /// Relative weight for weighted policies (RFC 5356 §4.1.2 style).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Priority (lower is preferred) for priority/failover order policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Maximum concurrent sessions this server should get.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
}

impl LoadHints {
    /// True when no hint is set (then the field is omitted on the wire).
    pub fn is_empty(&self) -> bool {
        self.weight.is_none() && self.priority.is_none() && self.capacity.is_none()
    }
}

/// Encodes one frame: 4-byte big-endian length, then the JSON body.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtocolError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_FRAME_LEN {
        return Err(ProtocolError::FrameTooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    // Cannot truncate: body.len() <= MAX_FRAME_LEN < u32::MAX.
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Incremental, sans-I/O frame decoder: feed bytes with [`FrameDecoder::push`], take
/// complete messages with [`FrameDecoder::next_frame`].
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Number of buffered bytes not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Returns the next complete frame payload (body, and tag if any), `Ok(None)` if more
    /// bytes are needed. Payloads may be up to [`MAX_FRAME_LEN`] + [`auth::TAG_LEN`] long.
    pub fn next_raw(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        let Some(header) = self.buf.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; FRAME_HEADER_LEN];
        len_bytes.copy_from_slice(header);
        let len = u32::from_be_bytes(len_bytes) as usize;
        if len > MAX_FRAME_LEN + auth::TAG_LEN {
            return Err(ProtocolError::FrameTooLarge(len));
        }
        if self.buf.len() < FRAME_HEADER_LEN + len {
            return Ok(None);
        }
        let payload = self.buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len].to_vec();
        self.buf.drain(..FRAME_HEADER_LEN + len);
        Ok(Some(payload))
    }

    /// Returns the next complete message, `Ok(None)` if more bytes are needed.
    ///
    /// After an error the stream is unusable (the frame boundary is lost); close it.
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ProtocolError> {
        let Some(header) = self.buf.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; FRAME_HEADER_LEN];
        len_bytes.copy_from_slice(header);
        let len = u32::from_be_bytes(len_bytes) as usize;
        if len > MAX_FRAME_LEN {
            return Err(ProtocolError::FrameTooLarge(len));
        }
        let Some(body) = self.buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
            return Ok(None);
        };
        let msg = serde_json::from_slice(body);
        self.buf.drain(..FRAME_HEADER_LEN + len);
        Ok(Some(msg?))
    }
}

/// Reads one frame from `r`. `Ok(None)` on a clean end of stream at a frame boundary.
pub async fn read_frame<R, T>(r: &mut R) -> Result<Option<T>, ProtocolError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut header = [0u8; FRAME_HEADER_LEN];
    let mut got = 0;
    while got < FRAME_HEADER_LEN {
        let n = r.read(&mut header[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(ProtocolError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        got += n;
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(ProtocolError::FrameTooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some(serde_json::from_slice(&body)?))
}

/// Writes one frame to `w` and flushes it.
pub async fn write_frame<W, T>(w: &mut W, msg: &T) -> Result<(), ProtocolError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let bytes = encode_frame(msg)?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, pids: &[u32]) -> AppStatus {
        AppStatus {
            rss_bytes: 4096,
            ports: vec![PortStatus {
                port: 8080,
                listening: Some(true),
                connections: Some(2),
            }],
            ..AppStatus::new(name, pids)
        }
    }

    #[test]
    fn app_status_host_and_start_time_are_optional_on_the_wire() {
        // An older daemon's report (no `host`, no `started_at_ms`) still decodes.
        let old = r#"{"name":"A","running":true,"instances":1,"pids":[7],"cpu_percent":0.0,"rss_bytes":1}"#;
        let a: AppStatus = serde_json::from_str(old).expect("old form");
        assert_eq!((a.host, a.started_at_ms), (None, None));
        let mut a = app("A", &[7]);
        a.host = Some("10.0.0.7".parse().expect("ip"));
        a.started_at_ms = Some(1_700_000_000_123);
        let v = serde_json::to_value(&a).expect("json");
        assert_eq!(v["host"], "10.0.0.7");
        assert_eq!(v["started_at_ms"], 1_700_000_000_123u64);
        let back: AppStatus = serde_json::from_value(v).expect("round trip");
        assert_eq!(back, a);
        // Omitted when unknown.
        let v = serde_json::to_value(app("A", &[])).expect("json");
        assert!(v.get("host").is_none() && v.get("started_at_ms").is_none());
    }

    #[test]
    fn hello_wire_form_is_documented_json() {
        let f = DaemonFrame {
            seq: 0,
            msg: DaemonMessage::Hello(Hello {
                protocol_version: 1,
                daemon_id: "host1".into(),
                instance: 7,
                config_version: 3,
                poll_interval_ms: 1000,
                heartbeat_interval_ms: 1000,
                software: "0.1.0".into(),
            }),
        };
        let bytes = encode_frame(&f).unwrap();
        let body = &bytes[4..];
        assert_eq!(
            u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize,
            body.len()
        );
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["type"], "hello");
        assert_eq!(v["seq"], 0);
        assert_eq!(v["daemon_id"], "host1");
        assert_eq!(v["protocol_version"], 1);
    }

    #[test]
    fn decoder_handles_split_and_coalesced_frames() {
        let a = DaemonFrame {
            seq: 1,
            msg: DaemonMessage::Snapshot(Snapshot {
                state_seq: 5,
                config_version: 1,
                taken_at_ms: 10,
                apps: vec![app("A", &[10, 11]), app("B", &[])],
            }),
        };
        let b = DaemonFrame {
            seq: 2,
            msg: DaemonMessage::Delta(Delta {
                state_seq: 6,
                config_version: 1,
                taken_at_ms: 11,
                changed: vec![app("A", &[10])],
                removed: vec!["C".into()],
            }),
        };
        let mut all = encode_frame(&a).unwrap();
        all.extend(encode_frame(&b).unwrap());
        let mut d = FrameDecoder::new();
        let mut out: Vec<DaemonFrame> = Vec::new();
        for chunk in all.chunks(7) {
            d.push(chunk);
            while let Some(f) = d.next_frame().unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, vec![a, b]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn oversized_and_garbage_frames_are_errors() {
        // A decoder fed a length prefix and a body.
        let fed = |len: u32, body: &[u8]| {
            let mut d = FrameDecoder::new();
            d.push(&len.to_be_bytes());
            d.push(body);
            d
        };
        assert!(matches!(
            fed(u32::MAX, b"").next_frame::<DaemonFrame>(),
            Err(ProtocolError::FrameTooLarge(_))
        ));
        assert!(matches!(
            fed(3, b"{x}").next_frame::<DaemonFrame>(),
            Err(ProtocolError::Json(_))
        ));
        assert!(matches!(
            fed(2, b"{}").next_frame::<ProxyMessage>(),
            Err(ProtocolError::Json(_))
        ));
    }

    #[test]
    fn config_push_and_ack_round_trip() {
        let p = ProxyMessage::ConfigPush(ConfigPush {
            version: 9,
            config_toml: "[daemon]\n".into(),
        });
        let mut d = FrameDecoder::new();
        d.push(&encode_frame(&p).unwrap());
        assert_eq!(d.next_frame::<ProxyMessage>().unwrap(), Some(p));
        let ack = DaemonMessage::ConfigAck(ConfigAck {
            version: 9,
            accepted: false,
            active_version: 8,
            error: Some("x".into()),
        });
        let v = serde_json::to_value(&ack).unwrap();
        assert_eq!(v["type"], "config_ack");
        assert_eq!(v["accepted"], false);
    }

    #[tokio::test]
    async fn async_read_write_frame_over_a_stream() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let msg = ProxyMessage::ConfigPush(ConfigPush {
            version: 2,
            config_toml: "x".repeat(300),
        });
        let m2 = msg.clone();
        let w = tokio::spawn(async move {
            write_frame(&mut a, &m2).await.unwrap();
            drop(a);
        });
        assert_eq!(
            read_frame::<_, ProxyMessage>(&mut b).await.unwrap(),
            Some(msg)
        );
        assert_eq!(read_frame::<_, ProxyMessage>(&mut b).await.unwrap(), None);
        w.await.unwrap();
    }
}
