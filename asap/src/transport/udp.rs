//! UDP datagrams for ASAP Server Announce (RFC 5352 §3.2) and ENRP Presence (RFC 5353 §3.1).
//!
//! Registrars announce themselves by multicast (defaults in [`super::defaults`]:
//! 239.0.0.50:3863 for ASAP, 239.0.0.51:9901 for ENRP); unicast works the same way. Each
//! datagram carries exactly one RSerPool message; there is no PPID on UDP, the port tells the
//! protocol.
//!
//! ```no_run
//! # async fn f() -> Result<(), asap::transport::TransportError> {
//! use asap::transport::{defaults, udp::UdpEndpoint};
//! let ep = UdpEndpoint::bind(defaults::ASAP_ANNOUNCE_ADDR.port().into()).await?;
//! ep.join_multicast_v4(defaults::ASAP_ANNOUNCE_GROUP, std::net::Ipv4Addr::UNSPECIFIED)?;
//! let (msg, from) = ep.recv_from().await?;
//! # let _ = (msg, from); Ok(()) }
//! ```

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use bytes::Bytes;
use tokio::net::UdpSocket;

use super::error::TransportError;

/// Where a [`UdpEndpoint`] binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UdpBind {
    /// `0.0.0.0:port` (needed to receive multicast sent to a group on that port).
    Port(u16),
    /// A specific address.
    Addr(SocketAddr),
}

impl From<u16> for UdpBind {
    fn from(p: u16) -> Self {
        UdpBind::Port(p)
    }
}

impl From<SocketAddr> for UdpBind {
    fn from(a: SocketAddr) -> Self {
        UdpBind::Addr(a)
    }
}

/// A UDP socket for announces: send/receive whole datagrams, multicast membership, TTL and
/// loopback. `SO_REUSEADDR` is set so that several processes on one host can listen to the
/// same announce group and port.
#[derive(Debug)]
pub struct UdpEndpoint {
    socket: UdpSocket,
}

/// Largest datagram received (the RSerPool header limits messages to 65535 bytes).
const MAX_DATAGRAM: usize = 65536;

impl UdpEndpoint {
    /// Binds a UDP socket with `SO_REUSEADDR`.
    pub async fn bind(at: UdpBind) -> Result<Self, TransportError> {
        let addr = match at {
            UdpBind::Port(p) => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, p)),
            UdpBind::Addr(a) => a,
        };
        let domain = socket2::Domain::for_address(addr);
        let sock = socket2::Socket::new(
            domain,
            socket2::Type::DGRAM.nonblocking().cloexec(),
            Some(socket2::Protocol::UDP),
        )
        .map_err(|e| TransportError::io("socket(UDP)", e))?;
        sock.set_reuse_address(true)
            .map_err(|e| TransportError::io("setsockopt(SO_REUSEADDR)", e))?;
        sock.bind(&addr.into())
            .map_err(|e| TransportError::io("bind", e))?;
        let socket = UdpSocket::from_std(std::net::UdpSocket::from(sock))
            .map_err(|e| TransportError::io("register with tokio", e))?;
        Ok(UdpEndpoint { socket })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.socket
            .local_addr()
            .map_err(|e| TransportError::io("getsockname", e))
    }

    /// Joins an IPv4 multicast group on the interface with address `iface`
    /// (`0.0.0.0` lets the kernel choose by route).
    pub fn join_multicast_v4(
        &self,
        group: Ipv4Addr,
        iface: Ipv4Addr,
    ) -> Result<(), TransportError> {
        self.socket
            .join_multicast_v4(group, iface)
            .map_err(|e| TransportError::io("IP_ADD_MEMBERSHIP", e))
    }

    /// Leaves an IPv4 multicast group.
    pub fn leave_multicast_v4(
        &self,
        group: Ipv4Addr,
        iface: Ipv4Addr,
    ) -> Result<(), TransportError> {
        self.socket
            .leave_multicast_v4(group, iface)
            .map_err(|e| TransportError::io("IP_DROP_MEMBERSHIP", e))
    }

    /// Joins an IPv6 multicast group on interface index `iface` (0 = default).
    pub fn join_multicast_v6(&self, group: &Ipv6Addr, iface: u32) -> Result<(), TransportError> {
        self.socket
            .join_multicast_v6(group, iface)
            .map_err(|e| TransportError::io("IPV6_ADD_MEMBERSHIP", e))
    }

    /// Leaves an IPv6 multicast group.
    pub fn leave_multicast_v6(&self, group: &Ipv6Addr, iface: u32) -> Result<(), TransportError> {
        self.socket
            .leave_multicast_v6(group, iface)
            .map_err(|e| TransportError::io("IPV6_DROP_MEMBERSHIP", e))
    }

    /// Sets the multicast TTL of sent datagrams (default 1 in [`super::defaults::MULTICAST_TTL`]).
    pub fn set_multicast_ttl(&self, ttl: u32) -> Result<(), TransportError> {
        self.socket
            .set_multicast_ttl_v4(ttl)
            .map_err(|e| TransportError::io("IP_MULTICAST_TTL", e))
    }

    /// Whether our own multicast datagrams are looped back to local listeners.
    pub fn set_multicast_loop(&self, on: bool) -> Result<(), TransportError> {
        self.socket
            .set_multicast_loop_v4(on)
            .map_err(|e| TransportError::io("IP_MULTICAST_LOOP", e))
    }

    /// Selects the outgoing interface (by its IPv4 address) for multicast.
    pub fn set_multicast_if(&self, iface: Ipv4Addr) -> Result<(), TransportError> {
        socket2::SockRef::from(&self.socket)
            .set_multicast_if_v4(&iface)
            .map_err(|e| TransportError::io("IP_MULTICAST_IF", e))
    }

    /// Sends one datagram (one RSerPool message) to a unicast or multicast address.
    pub async fn send_to(&self, bytes: &[u8], to: SocketAddr) -> Result<(), TransportError> {
        let n = self
            .socket
            .send_to(bytes, to)
            .await
            .map_err(|e| TransportError::io("sendto", e))?;
        if n != bytes.len() {
            return Err(TransportError::io(
                "sendto",
                std::io::Error::new(std::io::ErrorKind::WriteZero, "short datagram"),
            ));
        }
        Ok(())
    }

    /// Receives one datagram and its source address.
    pub async fn recv_from(&self) -> Result<(Bytes, SocketAddr), TransportError> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let (n, from) = self
            .socket
            .recv_from(&mut buf)
            .await
            .map_err(|e| TransportError::io("recvfrom", e))?;
        buf.truncate(n);
        Ok((Bytes::from(buf), from))
    }
}
