//! Fuzz target `registrar_core`: the `enrp-server` sans-I/O core fed an arbitrary sequence of
//! inputs (RELIABILITY.md, issue 13 item 7).
//!
//! Input layout (see `seed-corpus.sh`): byte 0 picks the configuration (peer admission open
//! or allow-list, small handlespace limits so that they are reached), then a sequence of
//! operations, each one opcode byte followed by its arguments:
//!
//! | op % 8 | operation | arguments |
//! |---|---|---|
//! | 0 | `Connected` | assoc (1), protocol+address (1), port (1) |
//! | 1 | `Disconnected` | assoc (1) |
//! | 2, 3 | `Message` | assoc (1), protocol (1), length (2, big-endian), bytes |
//! | 4 | time advance, then `handle_timeout` when due | 100 ms units (1) |
//! | 5 | `Datagram` | protocol+address (1), length (2), bytes |
//! | 6 | `Restarted` | assoc (1) |
//! | 7 | `ConnectFailed` (for an ID the core may or may not have asked for) | assoc (1) |
//!
//! Checked after every step: no panic; the handlespace stays within its configured limits
//! (pools, PEs in total and per pool); the core tracks no more associations than are
//! connected; `poll_timeout` never lies in the past after `handle_timeout` ran.
#![no_main]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use asap::handlespace::HandlespaceLimits;
use asap::transport::TransportKind;
use asap::wire::Protocol;
use bytes::Bytes;
use enrp_server::core::{CoreConfig, EnrpSecurity, Input, Registrar};
use libfuzzer_sys::fuzz_target;

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    /// Up to `n` bytes (fewer at the end of the input).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

fn protocol(b: u8) -> Protocol {
    if b & 1 == 0 {
        Protocol::Asap
    } else {
        Protocol::Enrp
    }
}

/// A peer address: loopback, site-local, global documentation or IPv6 loopback.
fn addr(b: u8, port: u8) -> SocketAddr {
    let ip = match (b >> 1) & 3 {
        0 => IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (b >> 3))),
        1 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1 + (b >> 3))),
        2 => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + (b >> 3))),
        _ => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    SocketAddr::new(ip, 3000 + u16::from(port))
}

fn check(r: &Registrar, limits: &HandlespaceLimits, connected: &BTreeSet<u64>) {
    let hs = r.handlespace();
    assert!(
        hs.len() <= limits.max_pes,
        "{} PEs > {}",
        hs.len(),
        limits.max_pes
    );
    assert!(hs.pool_count() <= limits.max_pools);
    let mut total = 0;
    for p in hs.pools() {
        assert!(!p.is_empty(), "empty pool kept in the handlespace");
        assert!(p.len() <= limits.max_pes_per_pool);
        total += p.len();
    }
    assert_eq!(total, hs.len(), "PE count disagrees with the pools");
    assert!(r.association_count() <= connected.len());
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor(data);
    let Some(cfg) = c.u8() else { return };
    let mut config = CoreConfig::new(0x1000_0001);
    config.seed = 7;
    config.limits = HandlespaceLimits {
        max_pools: 1 + usize::from(cfg & 3),
        max_pes_per_pool: 1 + usize::from((cfg >> 2) & 3),
        max_pes_per_connection: 1 + usize::from((cfg >> 4) & 3),
        max_pes: 6,
    };
    config.security.max_pes_per_peer = 3;
    if cfg & 0x40 != 0 {
        config.security.enrp_security = EnrpSecurity::Open;
    }
    if cfg & 0x80 != 0 {
        config.peering.enabled = true;
    }
    let limits = config.limits;
    let start = Instant::now();
    let mut now = start;
    let mut r = Registrar::new(config, now);
    let mut connected: BTreeSet<u64> = BTreeSet::new();
    let mut steps = 0;
    while let Some(op) = c.u8() {
        steps += 1;
        if steps > 256 {
            break;
        }
        match op % 8 {
            0 => {
                let (Some(a), Some(p), Some(port)) = (c.u8(), c.u8(), c.u8()) else {
                    break;
                };
                let assoc = u64::from(a % 8);
                if connected.insert(assoc) {
                    r.handle(
                        now,
                        Input::Connected {
                            assoc,
                            protocol: protocol(p),
                            peer_addrs: vec![addr(p, port)],
                            transport: TransportKind::Tcp,
                        },
                    );
                }
            }
            1 => {
                let Some(a) = c.u8() else { break };
                let assoc = u64::from(a % 8);
                if connected.remove(&assoc) {
                    r.handle(now, Input::Disconnected { assoc });
                }
            }
            2 | 3 => {
                let (Some(a), Some(p), Some(len)) = (c.u8(), c.u8(), c.u16()) else {
                    break;
                };
                let assoc = u64::from(a % 8);
                let bytes = Bytes::copy_from_slice(c.take(usize::from(len)));
                if connected.contains(&assoc) {
                    r.handle(
                        now,
                        Input::Message {
                            assoc,
                            protocol: protocol(p),
                            bytes,
                        },
                    );
                }
            }
            4 => {
                let Some(t) = c.u8() else { break };
                now += Duration::from_millis(100 * u64::from(t));
                // Like the driver: run every timer that is due, then the next one must be in
                // the future.
                let mut rounds = 0;
                while let Some(due) = r.poll_timeout() {
                    if due > now || rounds > 64 {
                        break;
                    }
                    r.handle_timeout(now);
                    rounds += 1;
                }
            }
            5 => {
                let (Some(p), Some(len)) = (c.u8(), c.u16()) else {
                    break;
                };
                let bytes = Bytes::copy_from_slice(c.take(usize::from(len)));
                r.handle(
                    now,
                    Input::Datagram {
                        from: addr(p, p),
                        protocol: protocol(p),
                        bytes,
                    },
                );
            }
            6 => {
                let Some(a) = c.u8() else { break };
                let assoc = u64::from(a % 8);
                if connected.contains(&assoc) {
                    r.handle(now, Input::Restarted { assoc });
                }
            }
            _ => {
                let Some(a) = c.u8() else { break };
                // Low values: IDs of accepted associations; high: the core's own range.
                let assoc = if a & 0x80 == 0 {
                    u64::from(a % 8)
                } else {
                    (1 << 63) + u64::from(a & 0x7F)
                };
                r.handle(now, Input::ConnectFailed { assoc });
            }
        }
        check(&r, &limits, &connected);
    }
});
