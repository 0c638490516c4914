//! Address sanity and scope rules for registered user transports (RFC 5352 registration:
//! the registrar checks that the addresses a PE announces are usable; asap/wire/INTEROP.md §2 last
//! bullet: rsplib filters them against the association's peer addresses and a minimum scope).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The scope of an address, ordered from narrowest to widest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressScope {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// RFC 1918 private space, 100.64.0.0/10, fc00::/7, fec0::/10.
    SiteLocal,
    /// Everything else.
    Global,
}

impl AddressScope {
    /// The scope of an address (unspecified/multicast/broadcast are rejected before this is
    /// asked, see [`is_unusable`]).
    pub fn of(addr: &IpAddr) -> AddressScope {
        match addr {
            IpAddr::V4(a) => v4_scope(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => v4_scope(&v4),
                None => v6_scope(a),
            },
        }
    }

    /// The lower-case name accepted by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            AddressScope::Loopback => "loopback",
            AddressScope::LinkLocal => "link-local",
            AddressScope::SiteLocal => "site-local",
            AddressScope::Global => "global",
        }
    }
}

fn v4_scope(a: &Ipv4Addr) -> AddressScope {
    let o = a.octets();
    if a.is_loopback() {
        AddressScope::Loopback
    } else if a.is_link_local() {
        AddressScope::LinkLocal
    } else if a.is_private() || (o[0] == 100 && (o[1] & 0xC0) == 64) {
        AddressScope::SiteLocal
    } else {
        AddressScope::Global
    }
}

fn v6_scope(a: &Ipv6Addr) -> AddressScope {
    let s = a.segments();
    if a.is_loopback() {
        AddressScope::Loopback
    } else if (s[0] & 0xFFC0) == 0xFE80 {
        AddressScope::LinkLocal
    } else if (s[0] & 0xFE00) == 0xFC00 || (s[0] & 0xFFC0) == 0xFEC0 {
        AddressScope::SiteLocal
    } else {
        AddressScope::Global
    }
}

impl fmt::Display for AddressScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`AddressScope::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown address scope {0:?} (expected loopback, link-local, site-local or global)")]
pub struct UnknownScope(pub String);

impl FromStr for AddressScope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "loopback" => AddressScope::Loopback,
            "link-local" => AddressScope::LinkLocal,
            "site-local" => AddressScope::SiteLocal,
            "global" => AddressScope::Global,
            other => return Err(UnknownScope(other.to_string())),
        })
    }
}

/// Addresses no PU could ever reach: unspecified, multicast, IPv4 broadcast.
pub fn is_unusable(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => {
            a.is_unspecified()
                || a.is_multicast()
                || a.to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast())
        }
    }
}

/// Canonical form for comparisons (IPv4-mapped IPv6 → IPv4), since a dual-stack socket
/// reports IPv4 peers as `::ffff:a.b.c.d`.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// An `ADDR/PREFIX` network, for the third-party registration allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

/// Error of [`IpNet::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid network {0:?} (expected ADDR or ADDR/PREFIX)")]
pub struct BadNet(pub String);

impl IpNet {
    /// True if `ip` lies in the network (IPv4-mapped addresses match IPv4 networks).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (canonical(self.addr), canonical(*ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let p = u32::from(self.prefix.min(32));
                let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                (u32::from(n) & mask) == (u32::from(a) & mask)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let p = u32::from(self.prefix.min(128));
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                (u128::from(n) & mask) == (u128::from(a) & mask)
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = BadNet;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadNet(s.to_string());
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for IpNet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal")
    }

    #[test]
    fn scopes() {
        assert_eq!(AddressScope::of(&ip("127.0.0.1")), AddressScope::Loopback);
        assert_eq!(AddressScope::of(&ip("::1")), AddressScope::Loopback);
        assert_eq!(
            AddressScope::of(&ip("169.254.1.1")),
            AddressScope::LinkLocal
        );
        assert_eq!(AddressScope::of(&ip("fe80::1")), AddressScope::LinkLocal);
        assert_eq!(AddressScope::of(&ip("10.1.2.3")), AddressScope::SiteLocal);
        assert_eq!(
            AddressScope::of(&ip("192.168.0.1")),
            AddressScope::SiteLocal
        );
        assert_eq!(AddressScope::of(&ip("fd00::1")), AddressScope::SiteLocal);
        assert_eq!(AddressScope::of(&ip("8.8.8.8")), AddressScope::Global);
        assert_eq!(
            AddressScope::of(&ip("::ffff:10.0.0.1")),
            AddressScope::SiteLocal
        );
        assert!(AddressScope::Loopback < AddressScope::SiteLocal);
    }

    #[test]
    fn unusable() {
        for a in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "ff02::1"] {
            assert!(is_unusable(&ip(a)), "{a}");
        }
        assert!(!is_unusable(&ip("10.0.0.1")));
    }

    #[test]
    fn nets() {
        let n: IpNet = "10.0.0.0/8".parse().expect("valid");
        assert!(n.contains(&ip("10.9.9.9")));
        assert!(n.contains(&ip("::ffff:10.9.9.9")));
        assert!(!n.contains(&ip("11.0.0.1")));
        let h: IpNet = "192.0.2.7".parse().expect("valid");
        assert_eq!(h.prefix, 32);
        assert!(h.contains(&ip("192.0.2.7")) && !h.contains(&ip("192.0.2.8")));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        let all: IpNet = "::/0".parse().expect("valid");
        assert!(all.contains(&ip("2001:db8::1")));
    }
}
