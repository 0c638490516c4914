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
}

impl TransportKind {
    /// Resolves `Auto` to `Sctp` or `Tcp` (probing the kernel once); `Sctp`/`Tcp` are returned
    /// unchanged.
    pub fn resolve(self) -> TransportKind {
        match self {
            TransportKind::Auto => match sctp_probe() {
                SctpProbe::Available => TransportKind::Sctp,
                SctpProbe::Unavailable { errno } => {
                    static WARNED: OnceLock<()> = OnceLock::new();
                    WARNED.get_or_init(|| {
                        warn!(
                            errno,
                            error = %std::io::Error::from_raw_os_error(errno),
                            "kernel SCTP is not available: transport 'auto' falls back to TCP \
                             (RFC 5352/5353 expect SCTP; peers must use TCP too)"
                        );
                    });
                    TransportKind::Tcp
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
#[error("unknown transport {0:?} (expected auto, sctp or tcp)")]
pub struct UnknownTransportKind(pub String);

impl FromStr for TransportKind {
    type Err = UnknownTransportKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(TransportKind::Auto),
            "sctp" => Ok(TransportKind::Sctp),
            "tcp" => Ok(TransportKind::Tcp),
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
        for k in [TransportKind::Auto, TransportKind::Sctp, TransportKind::Tcp] {
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
}
