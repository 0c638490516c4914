//! The last reason a registrar could not be used, as the PE and PU drivers report it in
//! their errors and WARN lines (issue 18: "registrar 127.0.0.1:3863: connection refused"
//! instead of a bare timeout).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::transport::TransportError;

/// Why the last attempt to use a registrar failed (RFC 5352 §3: registrar hunt).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RegistrarFailure {
    /// Connecting failed (refused, unreachable, timed out).
    Connect {
        /// The registrar's addresses.
        addrs: Vec<SocketAddr>,
        /// The transport error (shared: the failure is kept and cloned into errors).
        cause: Arc<TransportError>,
    },
    /// An association to the registrar was lost.
    Lost {
        /// The registrar's addresses.
        addrs: Vec<SocketAddr>,
    },
    /// No registrar is configured and none announced itself.
    NoneKnown,
}

impl RegistrarFailure {
    /// The registrar addresses concerned (empty for [`NoneKnown`](Self::NoneKnown)).
    pub fn addrs(&self) -> &[SocketAddr] {
        match self {
            RegistrarFailure::Connect { addrs, .. } | RegistrarFailure::Lost { addrs } => addrs,
            RegistrarFailure::NoneKnown => &[],
        }
    }
}

/// Equal when the same kind of failure happened at the same addresses with the same
/// error text (transport errors carry `io::Error`s, which have no equality).
impl PartialEq for RegistrarFailure {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                RegistrarFailure::Connect { addrs: a, cause: x },
                RegistrarFailure::Connect { addrs: b, cause: y },
            ) => a == b && x.to_string() == y.to_string(),
            (RegistrarFailure::Lost { addrs: a }, RegistrarFailure::Lost { addrs: b }) => a == b,
            (RegistrarFailure::NoneKnown, RegistrarFailure::NoneKnown) => true,
            _ => false,
        }
    }
}

impl Eq for RegistrarFailure {}

fn fmt_addrs(f: &mut fmt::Formatter<'_>, addrs: &[SocketAddr]) -> fmt::Result {
    for (i, a) in addrs.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{a}")?;
    }
    Ok(())
}

/// The cause of a connect error without repeating the addresses:
/// "connection refused (os error 111)" rather than "connect to [..] failed: ...".
fn fmt_cause(f: &mut fmt::Formatter<'_>, cause: &TransportError) -> fmt::Result {
    match cause {
        TransportError::Connect { source, .. } => {
            let text = source.to_string();
            // io::Error says "Connection refused (os error 111)"; lower-case the first
            // letter so that it reads as a clause after "registrar ADDR: ".
            let mut c = text.chars();
            match c.next() {
                Some(first) => write!(f, "{}{}", first.to_lowercase(), c.as_str()),
                None => Ok(()),
            }
        }
        TransportError::ConnectTimeout { after, .. } => {
            write!(f, "connect timed out after {after:?}")
        }
        other => write!(f, "{other}"),
    }
}

impl fmt::Display for RegistrarFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistrarFailure::Connect { addrs, cause } => {
                f.write_str("registrar ")?;
                fmt_addrs(f, addrs)?;
                f.write_str(": ")?;
                fmt_cause(f, cause)
            }
            RegistrarFailure::Lost { addrs } => {
                f.write_str("registrar ")?;
                fmt_addrs(f, addrs)?;
                f.write_str(": association lost")
            }
            RegistrarFailure::NoneKnown => {
                f.write_str("no registrar configured and none announced itself")
            }
        }
    }
}

impl std::error::Error for RegistrarFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RegistrarFailure::Connect { cause, .. } => Some(&**cause),
            _ => None,
        }
    }
}

/// Formats an optional last failure as "; last: CAUSE" (empty when there is none), for
/// error messages of the PE and PU drivers.
pub(crate) struct LastFailure<'a>(pub &'a Option<RegistrarFailure>);

impl fmt::Display for LastFailure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(c) => write!(f, " (last failure: {c})"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_reads_like_a_person_would_write_it() {
        let addr: SocketAddr = "127.0.0.1:3863".parse().expect("lit");
        let f = RegistrarFailure::Connect {
            addrs: vec![addr],
            cause: Arc::new(TransportError::Connect {
                addrs: vec![addr],
                source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            }),
        };
        assert_eq!(
            f.to_string(),
            "registrar 127.0.0.1:3863: connection refused"
        );
        assert_eq!(f.clone(), f);
        assert_eq!(
            LastFailure(&Some(RegistrarFailure::Lost { addrs: vec![addr] })).to_string(),
            " (last failure: registrar 127.0.0.1:3863: association lost)"
        );
    }
}
