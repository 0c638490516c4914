//! Choice of transport: kernel SCTP, TCP, or automatic.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::sys;

/// Which transport carries ASAP/ENRP associations.
///
/// RFC 5352/5353 mandate SCTP; TCP is offered for hosts without kernel SCTP (framing as in
/// [`super`]). `Auto` uses SCTP when the kernel has it and otherwise falls back to TCP with one
/// warning per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TransportKind {
    /// Kernel SCTP if available, else TCP.
    #[default]
    Auto,
    /// Kernel SCTP (one-to-one style sockets).
    Sctp,
    /// TCP with RSerPool-header framing.
    Tcp,
    /// Userspace SCTP over UDP (RFC 6951), [`super::sctp_udp`]: for hosts without kernel
    /// SCTP; talks to kernel SCTP peers with UDP encapsulation enabled.
    #[serde(rename = "sctp-udp")]
    SctpUdp,
}

impl TransportKind {
    /// Resolves `Auto` to `Sctp` or `Tcp` (probing the kernel once); other kinds are returned
    /// unchanged. Same as [`resolve_with`](Self::resolve_with)`(Tcp)`.
    pub fn resolve(self) -> TransportKind {
        self.resolve_with(TransportKind::Tcp)
    }

    /// Resolves `Auto` in this order: kernel SCTP if the kernel has it (probed once per
    /// process), else `fallback` (`Tcp` or `SctpUdp`; `Auto`/`Sctp` as fallback mean `Tcp`),
    /// with one warning per process. Other kinds are returned unchanged.
    pub fn resolve_with(self, fallback: TransportKind) -> TransportKind {
        let fallback = match fallback {
            TransportKind::SctpUdp => TransportKind::SctpUdp,
            _ => TransportKind::Tcp,
        };
        match self {
            TransportKind::Auto => match sctp_probe() {
                SctpProbe::Available => TransportKind::Sctp,
                SctpProbe::Unavailable { errno } => {
                    static WARNED: OnceLock<()> = OnceLock::new();
                    WARNED.get_or_init(|| {
                        warn!(
                            errno,
                            error = %std::io::Error::from_raw_os_error(errno),
                            fallback = fallback.as_str(),
                            "kernel SCTP is not available: transport 'auto' falls back to the \
                             configured fallback (TCP: peers must use TCP too; sctp-udp: \
                             peers need SCTP over UDP, RFC 6951)"
                        );
                    });
                    fallback
                }
            },
            other => other,
        }
    }

    /// The lower-case name as accepted by `FromStr`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Auto => "auto",
            TransportKind::Sctp => "sctp",
            TransportKind::Tcp => "tcp",
            TransportKind::SctpUdp => "sctp-udp",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of `TransportKind::from_str`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport {0:?} (expected auto, sctp, sctp-udp or tcp)")]
pub struct UnknownTransportKind(pub String);

impl FromStr for TransportKind {
    type Err = UnknownTransportKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(TransportKind::Auto),
            "sctp" => Ok(TransportKind::Sctp),
            "tcp" => Ok(TransportKind::Tcp),
            "sctp-udp" | "sctp_udp" | "sctpudp" => Ok(TransportKind::SctpUdp),
            _ => Err(UnknownTransportKind(s.to_owned())),
        }
    }
}

/// Result of probing the kernel for SCTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SctpProbe {
    /// `socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP)` succeeded.
    Available,
    /// It failed with this errno (EPROTONOSUPPORT when the module is missing).
    Unavailable {
        /// The `errno` of `socket()`.
        errno: i32,
    },
}

impl SctpProbe {
    /// True when kernel SCTP can be used.
    pub fn is_available(self) -> bool {
        self == SctpProbe::Available
    }
}

/// `available`, or `not available (errno N)`: e.g. for the line of a test skipped without
/// kernel SCTP.
impl fmt::Display for SctpProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SctpProbe::Available => f.write_str("available"),
            SctpProbe::Unavailable { errno } => write!(f, "not available (errno {errno})"),
        }
    }
}

/// Probes kernel SCTP once per process (the result is cached).
pub fn sctp_probe() -> SctpProbe {
    static PROBE: OnceLock<SctpProbe> = OnceLock::new();
    *PROBE.get_or_init(|| match sys::probe_socket() {
        Ok(()) => SctpProbe::Available,
        Err(e) => SctpProbe::Unavailable {
            errno: e.raw_os_error().unwrap_or(0),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        for k in [
            TransportKind::Auto,
            TransportKind::Sctp,
            TransportKind::Tcp,
            TransportKind::SctpUdp,
        ] {
            assert_eq!(k.as_str().parse::<TransportKind>(), Ok(k));
            assert_eq!(
                serde_json::to_string(&k).ok(),
                Some(format!("\"{}\"", k.as_str()))
            );
        }
        assert_eq!("SCTP".parse::<TransportKind>(), Ok(TransportKind::Sctp));
        assert!("udp".parse::<TransportKind>().is_err());
        let k: TransportKind = serde_json::from_str("\"tcp\"").expect("valid json");
        assert_eq!(k, TransportKind::Tcp);
    }

    #[test]
    fn probe_display() {
        assert_eq!(SctpProbe::Available.to_string(), "available");
        let p = SctpProbe::Unavailable { errno: 93 };
        assert_eq!(p.to_string(), "not available (errno 93)");
        assert!(SctpProbe::Available.is_available() && !p.is_available());
    }
}
