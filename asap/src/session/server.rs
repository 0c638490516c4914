//! The pool element side of the session layer: accept sessions on the PE's user transport,
//! receive data and ASAP_COOKIE_ECHO, send data, ASAP_COOKIE and ASAP_BUSINESS_CARD
//! (RFC 5352 §3). Framing as in the [module documentation](super).

use std::net::SocketAddr;

use bytes::Bytes;
use tracing::debug;

use super::{check_ppid, decode_frame, encode_frame, Frame, SessionError};
use crate::transport::{
    AssocReader, AssocWriter, Event, Listener, Transport, TransportConfig, TransportKind,
};
use crate::wire::asap_msg::{BusinessCard, Cookie, Error as AsapError};
use crate::wire::{
    AsapMessage, OperationError, PoolElementInfo, PoolHandle, TransportParameter, TransportUse,
};

/// Listens for sessions on a PE's user transport.
pub struct SessionListener {
    listener: Listener,
    kind: TransportKind,
    data_ppid: u32,
}

/// What a PE receives on a session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// Application data.
    Data(Bytes),
    /// ASAP_COOKIE_ECHO: the PU failed over from another PE and echoes its last cookie.
    CookieEcho(Vec<u8>),
    /// ASAP_BUSINESS_CARD from the PU.
    BusinessCard(BusinessCard),
}

impl SessionListener {
    /// Binds the user transport (`kind` Sctp/Tcp/Auto) on `addrs` (one port; 0 = any).
    pub async fn bind(
        kind: TransportKind,
        addrs: &[SocketAddr],
        data_ppid: u32,
    ) -> Result<Self, SessionError> {
        check_ppid(data_ppid)?;
        let t = Transport::new(TransportConfig::asap(kind));
        let listener = t.listen(addrs).await?;
        let kind = listener.kind();
        Ok(SessionListener {
            listener,
            kind,
            data_ppid,
        })
    }

    /// The bound addresses (with the real port).
    pub fn local_addrs(&self) -> Result<Vec<SocketAddr>, SessionError> {
        Ok(self.listener.local_addrs()?)
    }

    /// `Sctp` or `Tcp`.
    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// The User Transport parameter to register (data plus control: the session layer's
    /// control messages share the association, see the module documentation). Wildcard
    /// addresses are replaced by `advertise` when given.
    pub fn user_transport(
        &self,
        advertise: Option<std::net::IpAddr>,
    ) -> Result<TransportParameter, SessionError> {
        let addrs = self.local_addrs()?;
        let port = addrs.first().map_or(0, |a| a.port());
        let ips: Vec<std::net::IpAddr> = addrs
            .iter()
            .map(|a| match advertise {
                Some(ip) if a.ip().is_unspecified() => ip,
                _ => a.ip(),
            })
            .collect();
        Ok(match self.kind {
            TransportKind::Tcp => TransportParameter::Tcp {
                port,
                transport_use: TransportUse::DataPlusControl,
                address: ips
                    .first()
                    .copied()
                    .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
            },
            _ => TransportParameter::Sctp {
                port,
                transport_use: TransportUse::DataPlusControl,
                addresses: ips,
            },
        })
    }

    /// Waits for the next session.
    pub async fn accept(&self) -> Result<ServerSession, SessionError> {
        let assoc = self.listener.accept().await?;
        let peer = assoc.peer_addrs().unwrap_or_default();
        let kind = assoc.kind();
        let (reader, writer) = assoc.into_split();
        Ok(ServerSession {
            reader: ServerSessionReader { reader, kind },
            writer: ServerSessionWriter {
                writer,
                kind,
                data_ppid: self.data_ppid,
            },
            peer,
        })
    }
}

/// One PU's session at a PE.
pub struct ServerSession {
    reader: ServerSessionReader,
    writer: ServerSessionWriter,
    peer: Vec<SocketAddr>,
}

/// Receiving half of a [`ServerSession`].
pub struct ServerSessionReader {
    reader: AssocReader,
    kind: TransportKind,
}

/// Sending half of a [`ServerSession`].
pub struct ServerSessionWriter {
    writer: AssocWriter,
    kind: TransportKind,
    data_ppid: u32,
}

impl ServerSession {
    /// The PU's addresses.
    pub fn peer_addrs(&self) -> &[SocketAddr] {
        &self.peer
    }

    /// Next data or control message; `Ok(None)` when the PU closed the session.
    pub async fn recv(&mut self) -> Result<Option<ServerEvent>, SessionError> {
        self.reader.recv().await
    }

    /// Sends application data.
    pub async fn send(&mut self, data: impl Into<Bytes>) -> Result<(), SessionError> {
        self.writer.send(data).await
    }

    /// Sends an ASAP_COOKIE carrying this PE's session state.
    pub async fn send_cookie(&mut self, cookie: Vec<u8>) -> Result<(), SessionError> {
        self.writer.send_cookie(cookie).await
    }

    /// Sends an ASAP_BUSINESS_CARD naming the PEs the PU should fail over to.
    pub async fn send_business_card(
        &mut self,
        handle: PoolHandle,
        pes: Vec<PoolElementInfo>,
    ) -> Result<(), SessionError> {
        self.writer.send_business_card(handle, pes).await
    }

    /// Sends an ASAP_ERROR carrying `error` (see [`ServerSessionWriter::send_error`]).
    pub async fn send_error(&mut self, error: OperationError) -> Result<(), SessionError> {
        self.writer.send_error(error).await
    }

    /// Splits into halves for separate tasks.
    pub fn into_split(self) -> (ServerSessionReader, ServerSessionWriter) {
        (self.reader, self.writer)
    }
}

impl ServerSessionReader {
    /// Next data or control message; `Ok(None)` when the PU closed the session.
    pub async fn recv(&mut self) -> Result<Option<ServerEvent>, SessionError> {
        loop {
            match self.reader.recv().await {
                Ok(Event::Message(m)) => match decode_frame(self.kind, m) {
                    Some(Frame::Data(d)) => return Ok(Some(ServerEvent::Data(d))),
                    Some(Frame::Control(AsapMessage::CookieEcho(c))) => {
                        return Ok(Some(ServerEvent::CookieEcho(c.cookie)))
                    }
                    Some(Frame::Control(AsapMessage::BusinessCard(b))) => {
                        return Ok(Some(ServerEvent::BusinessCard(b)))
                    }
                    Some(Frame::Control(other)) => debug!(
                        msg = other.message_type().name().unwrap_or("?"),
                        "ignoring control message from PU"
                    ),
                    None => {}
                },
                Ok(Event::Lost(_)) => return Ok(None),
                Ok(_) => {}
                Err(crate::transport::TransportError::Closed) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Every send writes one whole frame. The sends are **not cancel-safe**: a send future
/// dropped before it completes may leave part of a frame on a TCP connection, which breaks
/// the framing for the PU. Callers that must abandon a send (e.g. in a `select!`) should
/// own the writer in a task of its own and feed it through a channel.
impl ServerSessionWriter {
    async fn frame(&mut self, f: Frame) -> Result<(), SessionError> {
        let m = encode_frame(self.kind, self.data_ppid, &f)?;
        Ok(self.writer.send(&m).await?)
    }

    /// Sends application data.
    pub async fn send(&mut self, data: impl Into<Bytes>) -> Result<(), SessionError> {
        self.frame(Frame::Data(data.into())).await
    }

    /// Sends an ASAP_COOKIE.
    pub async fn send_cookie(&mut self, cookie: Vec<u8>) -> Result<(), SessionError> {
        self.frame(Frame::Control(Cookie { cookie }.into())).await
    }

    /// Sends an ASAP_BUSINESS_CARD.
    pub async fn send_business_card(
        &mut self,
        handle: PoolHandle,
        pes: Vec<PoolElementInfo>,
    ) -> Result<(), SessionError> {
        let policy = pes.first().map(|p| p.policy.clone());
        self.frame(Frame::Control(
            BusinessCard {
                pool_handle: handle,
                policy,
                pool_elements: pes,
            }
            .into(),
        ))
        .await
    }

    /// Sends an ASAP_ERROR (RFC 5352 §2.2.13) with the given Operation Error, e.g. to tell
    /// the PU why the PE cannot serve its session before closing it.
    pub async fn send_error(&mut self, error: OperationError) -> Result<(), SessionError> {
        self.frame(Frame::Control(AsapError { error }.into())).await
    }

    /// Graceful close.
    pub async fn close(&mut self) -> Result<(), SessionError> {
        Ok(self.writer.close().await?)
    }
}
