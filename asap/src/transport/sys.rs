//! Linux kernel SCTP socket API: constants, structures and thin `unsafe` wrappers (private).
//!
//! The `libc` crate does not define the SCTP socket API, so the values below are copied from the
//! kernel UAPI header `include/uapi/linux/sctp.h` (checked against `/usr/include/linux/sctp.h`
//! of linux-libc-dev 6.1 on Debian 12) and follow RFC 6458 ("Sockets API Extensions for SCTP").
//!
//! # The one place with `unsafe`
//!
//! This module is the only one in the `asap` crate allowed to use `unsafe` (the crate root
//! says `#![deny(unsafe_code)]`, `transport/mod.rs` allows it for `mod sys` alone; the codec
//! `rserpool-wire` and `rsp-capture` forbid it outright). Everything it exports is a safe
//! function; the safety argument of every block rests on these invariants:
//!
//! 1. **Descriptors are owned or borrowed, never raw.** Every function takes an
//!    [`OwnedFd`] or a [`BorrowedFd`], so the descriptor is open for the whole call and cannot
//!    be closed or reused underneath it (I/O safety). [`accept`] wraps the descriptor the
//!    kernel just created, which nothing else owns, in an `OwnedFd`; [`register`] moves an
//!    `OwnedFd` into tokio's `AsyncFd`, which owns it until it is dropped — the contract of
//!    `AsyncFd::register_with_interest`.
//! 2. **Buffers handed to the kernel are live and at least as long as the length passed.**
//!    `setsockopt` gets a pointer and the exact size of a value or byte buffer borrowed for
//!    the call; `getsockopt`, `recvmmsg`, `sendmsg` and `sendmmsg` get `iovec`s and control
//!    buffers
//!    that are locals or borrowed slices, with their true lengths; `poll` gets one local
//!    `pollfd`; the kernel never writes past the length it is given and reports how much it
//!    wrote.
//! 3. **Only plain old data crosses the boundary.** [`setsockopt`] accepts only the
//!    [`SockOpt`] types of this module: `#[repr(C)]` structs of integers laid out as in
//!    `linux/sctp.h` (sizes and offsets are checked by the unit test
//!    `struct_sizes_match_linux_sctp_h`), and `c_int`. Values read back (`SCTP_RCVINFO`,
//!    `SCTP_SNDRCV`, peer addresses, `SCTP_STATUS`, `TCP_INFO`) are integers, so every bit pattern is valid; they are
//!    read with `read_unaligned` because control-message data carries no alignment promise.
//! 4. **Control messages are walked with the libc `CMSG_*` macros only**, which stay within
//!    `msg_controllen`; a control message whose length is shorter than its header is
//!    skipped, and a payload shorter than the struct we expect is ignored. The send side's
//!    control buffers (one per message for `sendmmsg`, each in its own array slot that is
//!    not moved while the kernel holds pointers to it) are checked to hold
//!    `CMSG_SPACE(sizeof(sctp_sndinfo))` before they are used.
//! 5. **Reinterpreting memory as bytes** (`pack_addrs`, `get_addrs`) is done only on
//!    initialised memory of the stated length (a `sockaddr` from `socket2`, a `Vec<u64>`).

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// `IPPROTO_SCTP` (linux/in.h), also the socket option level `SOL_SCTP`.
pub(crate) const IPPROTO_SCTP: libc::c_int = 132;
/// `SOL_SCTP` (linux/socket.h): equal to `IPPROTO_SCTP`.
pub(crate) const SOL_SCTP: libc::c_int = 132;

// Socket options (linux/sctp.h, RFC 6458 §8).
/// `SCTP_RTOINFO` (RFC 6458 §8.1.1).
pub(crate) const SCTP_RTOINFO: libc::c_int = 0;
/// `SCTP_INITMSG` (RFC 6458 §8.1.3).
pub(crate) const SCTP_INITMSG: libc::c_int = 2;
/// `SCTP_NODELAY` (RFC 6458 §8.1.5): disable Nagle-like bundling delay.
pub(crate) const SCTP_NODELAY: libc::c_int = 3;
/// `SCTP_STATUS` (RFC 6458 §8.2.1): association state and the primary path's
/// `struct sctp_paddrinfo` (smoothed RTT among it).
pub(crate) const SCTP_STATUS: libc::c_int = 14;
/// `SCTP_PEER_ADDR_PARAMS` (RFC 6458 §8.1.12): heartbeat interval, path max retransmissions.
pub(crate) const SCTP_PEER_ADDR_PARAMS: libc::c_int = 9;
/// `SCTP_EVENTS` (RFC 6458 §6.2.1, deprecated form of `SCTP_EVENT`).
pub(crate) const SCTP_EVENTS: libc::c_int = 11;
/// `SCTP_RECVRCVINFO` (RFC 6458 §8.1.29): deliver `SCTP_RCVINFO` ancillary data.
pub(crate) const SCTP_RECVRCVINFO: libc::c_int = 32;
/// `SCTP_SOCKOPT_BINDX_ADD` (linux/sctp.h; RFC 6458 §9.1 `sctp_bindx(SCTP_BINDX_ADD_ADDR)`).
pub(crate) const SCTP_SOCKOPT_BINDX_ADD: libc::c_int = 100;
/// `SCTP_GET_PEER_ADDRS` (linux/sctp.h; RFC 6458 §9.3 `sctp_getpaddrs`).
pub(crate) const SCTP_GET_PEER_ADDRS: libc::c_int = 108;
/// `SCTP_GET_LOCAL_ADDRS` (linux/sctp.h; RFC 6458 §9.5 `sctp_getladdrs`).
pub(crate) const SCTP_GET_LOCAL_ADDRS: libc::c_int = 109;
/// `SCTP_SOCKOPT_CONNECTX` (linux/sctp.h; RFC 6458 §9.9 `sctp_connectx`): returns the assoc id.
pub(crate) const SCTP_SOCKOPT_CONNECTX: libc::c_int = 110;
/// `SCTP_EVENT` (RFC 6458 §6.2.2): per-type notification subscription.
pub(crate) const SCTP_EVENT: libc::c_int = 127;

// Ancillary data types, `enum sctp_cmsg_type` (RFC 6458 §5.3).
/// `SCTP_SNDRCV` (RFC 6458 §5.3.2, deprecated; still delivered when subscribed to data I/O).
pub(crate) const SCTP_SNDRCV: libc::c_int = 1;
/// `SCTP_SNDINFO` (RFC 6458 §5.3.4).
pub(crate) const SCTP_SNDINFO: libc::c_int = 2;
/// `SCTP_RCVINFO` (RFC 6458 §5.3.5).
pub(crate) const SCTP_RCVINFO: libc::c_int = 3;

/// `MSG_NOTIFICATION` (linux/sctp.h `enum sctp_msg_flags`): the data is a notification.
pub(crate) const MSG_NOTIFICATION: libc::c_int = 0x8000;

// Notification types, `enum sctp_sn_type` (RFC 6458 §6.1).
/// `SCTP_ASSOC_CHANGE` (RFC 6458 §6.1.1).
pub(crate) const SCTP_ASSOC_CHANGE: u16 = (1 << 15) + 1;
/// `SCTP_PEER_ADDR_CHANGE` (RFC 6458 §6.1.2).
pub(crate) const SCTP_PEER_ADDR_CHANGE: u16 = (1 << 15) + 2;
/// `SCTP_SHUTDOWN_EVENT` (RFC 6458 §6.1.5).
pub(crate) const SCTP_SHUTDOWN_EVENT: u16 = (1 << 15) + 5;

// `enum sctp_sac_state` (RFC 6458 §6.1.1).
pub(crate) const SCTP_COMM_UP: u16 = 0;
pub(crate) const SCTP_COMM_LOST: u16 = 1;
pub(crate) const SCTP_RESTART: u16 = 2;
pub(crate) const SCTP_SHUTDOWN_COMP: u16 = 3;
pub(crate) const SCTP_CANT_STR_ASSOC: u16 = 4;

/// `SPP_HB_ENABLE` (linux/sctp.h `enum sctp_spp_flags`).
pub(crate) const SPP_HB_ENABLE: u32 = 1;

/// `struct sctp_initmsg` (RFC 6458 §5.3.1).
#[repr(C)]
#[derive(Default)]
pub(crate) struct SctpInitmsg {
    pub sinit_num_ostreams: u16,
    pub sinit_max_instreams: u16,
    pub sinit_max_attempts: u16,
    pub sinit_max_init_timeo: u16,
}

/// `struct sctp_sndrcvinfo` (RFC 6458 §5.3.2): 32 bytes, `sinfo_ppid` at offset 8.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub(crate) struct SctpSndrcvinfo {
    pub sinfo_stream: u16,
    pub sinfo_ssn: u16,
    pub sinfo_flags: u16,
    pub sinfo_ppid: u32,
    pub sinfo_context: u32,
    pub sinfo_timetolive: u32,
    pub sinfo_tsn: u32,
    pub sinfo_cumtsn: u32,
    pub sinfo_assoc_id: i32,
}

/// `struct sctp_sndinfo` (RFC 6458 §5.3.4): 16 bytes.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub(crate) struct SctpSndinfo {
    pub snd_sid: u16,
    pub snd_flags: u16,
    /// Opaque to the kernel: put on the wire as is, so callers store it in network order.
    pub snd_ppid: u32,
    pub snd_context: u32,
    pub snd_assoc_id: i32,
}

/// `struct sctp_rcvinfo` (RFC 6458 §5.3.5): 28 bytes.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub(crate) struct SctpRcvinfo {
    pub rcv_sid: u16,
    pub rcv_ssn: u16,
    pub rcv_flags: u16,
    pub rcv_ppid: u32,
    pub rcv_tsn: u32,
    pub rcv_cumtsn: u32,
    pub rcv_context: u32,
    pub rcv_assoc_id: i32,
}

/// `struct sctp_rtoinfo` (RFC 6458 §8.1.1), milliseconds.
#[repr(C)]
pub(crate) struct SctpRtoinfo {
    pub srto_assoc_id: i32,
    pub srto_initial: u32,
    pub srto_max: u32,
    pub srto_min: u32,
}

/// `struct sctp_event` (RFC 6458 §6.2.2).
#[repr(C)]
pub(crate) struct SctpEvent {
    pub se_assoc_id: i32,
    pub se_type: u16,
    pub se_on: u8,
}

/// `struct sctp_event_subscribe` (RFC 6458 §6.2.1) as of Linux 6.1 (14 bytes).
#[repr(C)]
#[derive(Default)]
pub(crate) struct SctpEventSubscribe {
    pub data_io: u8,
    pub association: u8,
    pub address: u8,
    pub send_failure: u8,
    pub peer_error: u8,
    pub shutdown: u8,
    pub partial_delivery: u8,
    pub adaptation_layer: u8,
    pub authentication: u8,
    pub sender_dry: u8,
    pub stream_reset: u8,
    pub assoc_reset: u8,
    pub stream_change: u8,
    pub send_failure_event: u8,
}

/// `struct sctp_paddrparams` is `packed, aligned(4)`; this is its byte layout (156 bytes):
/// assoc_id @0 (4), spp_address @4 (128, sockaddr_storage), spp_hbinterval @132 (4),
/// spp_pathmaxrxt @136 (2), spp_pathmtu @138 (4), spp_sackdelay @142 (4), spp_flags @146 (4),
/// spp_ipv6_flowlabel @150 (4), spp_dscp @154 (1), 1 byte tail padding.
const PADDRPARAMS_LEN: usize = 156;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens and closes an SCTP socket to learn whether the kernel supports SCTP.
pub(crate) fn probe_socket() -> io::Result<()> {
    socket(libc::AF_INET).map(drop)
}

/// `socket(domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_SCTP)`: a one-to-one
/// style SCTP socket (RFC 6458 §4). The result is checked, so a missing SCTP module is an error
/// here and never an invalid descriptor later.
pub(crate) fn socket(domain: libc::c_int) -> io::Result<OwnedFd> {
    let sock = socket2::Socket::new(
        socket2::Domain::from(domain),
        socket2::Type::STREAM.nonblocking().cloexec(),
        Some(socket2::Protocol::from(IPPROTO_SCTP)),
    )?;
    Ok(OwnedFd::from(sock))
}

/// Values [`setsockopt`] may pass to the kernel: plain old data (integers, `#[repr(C)]`
/// structs of integers laid out as in `linux/sctp.h`). Implemented only in this module
/// (safety invariant 3 of the module doc).
pub(crate) trait SockOpt {}
impl SockOpt for libc::c_int {}
impl SockOpt for SctpInitmsg {}
impl SockOpt for SctpRtoinfo {}
impl SockOpt for SctpEvent {}
impl SockOpt for SctpEventSubscribe {}

/// `setsockopt(fd, level, name, &value, sizeof value)`.
pub(crate) fn setsockopt<T: SockOpt>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    setsockopt_bytes(fd, level, name, (value as *const T).cast(), size_of::<T>())
}

fn setsockopt_bytes(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    ptr: *const libc::c_void,
    len: usize,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "option too large"))?;
    // SAFETY: `ptr` points to `len` readable bytes owned by the caller for the duration of the
    // call; the kernel copies them.
    cvt(unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, ptr, len) }).map(drop)
}

/// Packs socket addresses back to back as `sctp_bindx`/`sctp_connectx` expect
/// (`sockaddr_in` = 16 bytes, `sockaddr_in6` = 28 bytes, RFC 6458 §9.1).
fn pack_addrs(addrs: &[SocketAddr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(addrs.len() * 28);
    for a in addrs {
        let sa = socket2::SockAddr::from(*a);
        // SAFETY: `as_ptr` points to a sockaddr of `len()` initialised bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts(sa.as_ptr().cast::<u8>(), sa.len() as usize) };
        out.extend_from_slice(bytes);
    }
    out
}

/// `sctp_bindx(fd, addrs, SCTP_BINDX_ADD_ADDR)`: binds all addresses (one port) at once.
pub(crate) fn bindx_add(fd: BorrowedFd<'_>, addrs: &[SocketAddr]) -> io::Result<()> {
    setsockopt_addrs(fd, SCTP_SOCKOPT_BINDX_ADD, addrs)
}

/// `sctp_connectx(fd, addrs)`: starts an association to a multi-homed peer. On a non-blocking
/// socket this fails with `EINPROGRESS`; completion is signalled by writability and `SO_ERROR`.
pub(crate) fn connectx(fd: BorrowedFd<'_>, addrs: &[SocketAddr]) -> io::Result<()> {
    setsockopt_addrs(fd, SCTP_SOCKOPT_CONNECTX, addrs)
}

/// The socket options that take a packed address list (RFC 6458 §9.1, §9.9).
fn setsockopt_addrs(fd: BorrowedFd<'_>, name: libc::c_int, addrs: &[SocketAddr]) -> io::Result<()> {
    let packed = pack_addrs(addrs);
    setsockopt_bytes(fd, SOL_SCTP, name, packed.as_ptr().cast(), packed.len())
}

/// `SCTP_PEER_ADDR_PARAMS` for all paths of the association: heartbeat interval (ms) and
/// path maximum retransmissions.
pub(crate) fn set_path_params(
    fd: BorrowedFd<'_>,
    hb_interval_ms: u32,
    path_max_retrans: u16,
) -> io::Result<()> {
    let mut buf = [0u8; PADDRPARAMS_LEN];
    // spp_address stays all-zero (AF_UNSPEC): applies to the association/endpoint default.
    buf[132..136].copy_from_slice(&hb_interval_ms.to_ne_bytes());
    buf[136..138].copy_from_slice(&path_max_retrans.to_ne_bytes());
    let flags = if hb_interval_ms > 0 { SPP_HB_ENABLE } else { 0 };
    buf[146..150].copy_from_slice(&flags.to_ne_bytes());
    setsockopt_bytes(
        fd,
        SOL_SCTP,
        SCTP_PEER_ADDR_PARAMS,
        buf.as_ptr().cast(),
        buf.len(),
    )
}

/// Subscribes to association-change, peer-address-change and shutdown notifications with
/// `SCTP_EVENT` (RFC 6458 §6.2.2), falling back to `SCTP_EVENTS` on old kernels.
pub(crate) fn subscribe_events(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut result = Ok(());
    for t in [
        SCTP_ASSOC_CHANGE,
        SCTP_PEER_ADDR_CHANGE,
        SCTP_SHUTDOWN_EVENT,
    ] {
        let ev = SctpEvent {
            se_assoc_id: 0,
            se_type: t,
            se_on: 1,
        };
        result = setsockopt(fd, SOL_SCTP, SCTP_EVENT, &ev);
        if result.is_err() {
            break;
        }
    }
    if result.is_err() {
        let sub = SctpEventSubscribe {
            association: 1,
            address: 1,
            shutdown: 1,
            ..Default::default()
        };
        setsockopt(fd, SOL_SCTP, SCTP_EVENTS, &sub)?;
    }
    Ok(())
}

/// Reads `SO_ERROR`.
pub(crate) fn take_error(fd: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    socket2::SockRef::from(&fd).take_error()
}

/// `sctp_getpaddrs` / `sctp_getladdrs` (RFC 6458 §9.3, §9.5) for a one-to-one socket.
pub(crate) fn get_addrs(fd: BorrowedFd<'_>, peer: bool) -> io::Result<Vec<SocketAddr>> {
    let name = if peer {
        SCTP_GET_PEER_ADDRS
    } else {
        SCTP_GET_LOCAL_ADDRS
    };
    // struct sctp_getaddrs { sctp_assoc_t assoc_id; __u32 addr_num; __u8 addrs[]; }
    let mut buf = vec![0u64; 1024]; // 8 KiB, 8-byte aligned: room for > 250 IPv6 addresses
    let mut len = libc::socklen_t::try_from(buf.len() * 8).unwrap_or(libc::socklen_t::MAX);
    // SAFETY: buf is writable for `len` bytes; the kernel writes at most `len` and updates it.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            SOL_SCTP,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    // SAFETY: reinterpreting initialised u64s as bytes.
    let bytes: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), buf.len() * 8) };
    let used = (len as usize).min(bytes.len());
    let count = u32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    let mut out = Vec::with_capacity(count);
    let mut off = 8;
    for _ in 0..count {
        let Some((addr, size)) = parse_sockaddr(bytes.get(off..used).unwrap_or(&[])) else {
            break;
        };
        out.push(addr);
        off += size;
    }
    Ok(out)
}

/// Size of `struct sctp_status` (RFC 6458 §8.2.1, linux/sctp.h): 24 bytes of association
/// fields, then `struct sctp_paddrinfo sstat_primary` (`packed, aligned(4)`: assoc id 4,
/// `sockaddr_storage` 128, state 4, cwnd 4, srtt 4, rto 4, mtu 4 = 152 bytes).
const SCTP_STATUS_LEN: usize = 176;
/// Offset of `sstat_primary.spinfo_srtt` in `struct sctp_status` (24 + 4 + 128 + 4 + 4).
const SCTP_STATUS_SRTT_OFFSET: usize = 164;

/// `getsockopt(SCTP_STATUS)` on a one-to-one socket: the smoothed RTT of the primary path
/// (`sstat_primary.spinfo_srtt`, RFC 6458 §8.2.1 / §8.2.2), as the kernel reports it.
///
/// Linux copies `transport->srtt` unconverted: it is in **jiffies** (milliseconds only with
/// `CONFIG_HZ=1000`; multiply by [`jiffy`]). rsplib's registrar reads the same field and takes
/// it as ms (`rspregistrar-global.c`). Returns `None` before the first RTT measurement (0).
pub(crate) fn sctp_primary_srtt(fd: BorrowedFd<'_>) -> io::Result<Option<u32>> {
    // u32 words: 4-byte aligned like the struct, zeroed (assoc id 0 = this association).
    let mut buf = [0u32; SCTP_STATUS_LEN / 4];
    let mut len = SCTP_STATUS_LEN as libc::socklen_t;
    // SAFETY: buf is writable for SCTP_STATUS_LEN bytes and `len` says so; the kernel
    // writes at most `len` bytes (it requires len >= sizeof(struct sctp_status)) and
    // updates it. Only integers are read back.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            SOL_SCTP,
            SCTP_STATUS,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    if (len as usize) < SCTP_STATUS_SRTT_OFFSET + 4 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short SCTP_STATUS answer",
        ));
    }
    let srtt = buf[SCTP_STATUS_SRTT_OFFSET / 4];
    Ok((srtt != 0).then_some(srtt))
}

/// Length of one kernel tick (jiffy, `1/CONFIG_HZ` s): the resolution of
/// `CLOCK_MONOTONIC_COARSE`, which the kernel reports as `TICK_NSEC`. Used to convert
/// `spinfo_srtt`, which Linux reports in jiffies.
pub(crate) fn jiffy() -> io::Result<std::time::Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, writable timespec for the call.
    cvt(unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) })?;
    let d = std::time::Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    );
    if d.is_zero() || d > std::time::Duration::from_millis(100) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("implausible CLOCK_MONOTONIC_COARSE resolution {d:?}"),
        ));
    }
    Ok(d)
}

/// `getsockopt(IPPROTO_TCP, TCP_INFO)`: the smoothed RTT `tcpi_rtt` in microseconds
/// (`None` before the first measurement). Works on any socket; a non-TCP socket gives an
/// error.
pub(crate) fn tcp_srtt_us(fd: BorrowedFd<'_>) -> io::Result<Option<u32>> {
    // SAFETY: `tcp_info` is a plain struct of integers, valid when zeroed.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes; the kernel writes at most `len` (it copies
    // min(len, its own size)) and updates `len`. Every bit pattern of the integers is valid.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    })?;
    let rtt_end = std::mem::offset_of!(libc::tcp_info, tcpi_rtt) + 4;
    if (len as usize) < rtt_end {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short TCP_INFO answer",
        ));
    }
    Ok((info.tcpi_rtt != 0).then_some(info.tcpi_rtt))
}

/// Parses one `sockaddr_in`/`sockaddr_in6` from raw bytes; returns it and its size.
pub(crate) fn parse_sockaddr(b: &[u8]) -> Option<(SocketAddr, usize)> {
    let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]);
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match i32::from(family) {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some((
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)),
                size_of::<libc::sockaddr_in>(),
            ))
        }
        libc::AF_INET6 => {
            let flow = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
            let ip = Ipv6Addr::from(ip);
            // Show IPv4-mapped peers of AF_INET6 sockets as plain IPv4.
            let addr = match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(IpAddr::V4(v4), port),
                None => SocketAddr::V6(SocketAddrV6::new(ip, port, flow, scope)),
            };
            Some((addr, size_of::<libc::sockaddr_in6>()))
        }
        _ => None,
    }
}

/// Ancillary data of one received piece (one slot of [`recvmmsg`]).
#[derive(Default, Clone, Copy)]
pub(crate) struct RecvInfo {
    /// (stream, ppid in host order) from `SCTP_RCVINFO` or `SCTP_SNDRCV`.
    pub info: Option<(u16, u32)>,
}

/// 64-bit words of one receive control buffer (256 bytes: `SCTP_RCVINFO` and `SCTP_SNDRCV`
/// with their headers need 96).
const RECV_CMSG_WORDS: usize = 32;

/// Most pieces one [`recvmmsg`] call reads.
pub(crate) const RECVMMSG_MAX: usize = 16;

/// What one slot of a [`recvmmsg`] call received: a piece as one `recvmsg` returns it.
#[derive(Default, Clone, Copy)]
pub(crate) struct RecvSlot {
    /// Bytes written into the slot.
    pub len: usize,
    /// `msg_flags` (`MSG_EOR`, `MSG_NOTIFICATION`).
    pub flags: libc::c_int,
    /// Stream and PPID of the piece.
    pub info: RecvInfo,
}

/// Several pieces in one non-blocking `recvmmsg(2)`: `buf` is cut into `out.len()` slots of
/// `buf.len() / out.len()` bytes (at most [`RECVMMSG_MAX`]), slot `i` at `i * slot_len`;
/// each slot receives what one `recvmsg` into it would (a whole message, or the next piece
/// of one larger than the slot, without `MSG_EOR`), in order. Returns how many slots were
/// filled (≥ 1); `EAGAIN` when nothing was readable. A slot of length 0 without
/// `MSG_NOTIFICATION` is the end of the stream, as for `recvmsg`.
pub(crate) fn recvmmsg(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    out: &mut [RecvSlot],
) -> io::Result<usize> {
    let n = out.len().min(RECVMMSG_MAX);
    if n == 0 || buf.len() < n {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "recvmmsg: no slots",
        ));
    }
    let slot_len = buf.len() / n;
    let mut cbufs = [[0u64; RECV_CMSG_WORDS]; RECVMMSG_MAX];
    let base = buf.as_mut_ptr();
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; RECVMMSG_MAX];
    // SAFETY: an all-zero mmsghdr is a valid "no name, no iov, no control" header.
    let mut hdrs: [libc::mmsghdr; RECVMMSG_MAX] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        iovs[i] = libc::iovec {
            // SAFETY: i * slot_len + slot_len ≤ n * (buf.len() / n) ≤ buf.len(): in bounds.
            iov_base: unsafe { base.add(i * slot_len) }.cast(),
            iov_len: slot_len,
        };
        let h = &mut hdrs[i].msg_hdr;
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
        h.msg_control = cbufs[i].as_mut_ptr().cast();
        h.msg_controllen = std::mem::size_of_val(&cbufs[i]) as _;
    }
    // SAFETY: `hdrs[..n]` point at `iovs`, `cbufs` and disjoint slots of `buf`, all live and
    // exclusively borrowed for the call, with their true lengths; the kernel writes at most
    // those lengths and each header's msg_len, msg_flags and msg_controllen.
    let got = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            n as _,
            libc::MSG_DONTWAIT as _,
            std::ptr::null_mut(),
        )
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = (got as usize).min(n);
    for (i, o) in out[..got].iter_mut().enumerate() {
        let h = &hdrs[i];
        *o = RecvSlot {
            len: (h.msg_len as usize).min(slot_len),
            flags: h.msg_hdr.msg_flags,
            info: recv_info(&h.msg_hdr),
        };
    }
    Ok(got)
}

/// Stream and PPID from the control messages of a header the kernel filled in.
fn recv_info(msg: &libc::msghdr) -> RecvInfo {
    let mut info = RecvInfo::default();
    // SAFETY: `msg` is a header filled in by recvmmsg whose control buffer is live
    // (the caller's local); the CMSG_* macros walk it bounded by msg_controllen as the
    // kernel set it; a header shorter than itself is skipped (no underflow); data is read
    // unaligned and only when the payload is at least as long as the struct.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            let dlen = ((*c).cmsg_len as usize).saturating_sub(data as usize - c as usize);
            if (*c).cmsg_level == IPPROTO_SCTP {
                if (*c).cmsg_type == SCTP_RCVINFO && dlen >= size_of::<SctpRcvinfo>() {
                    let r: SctpRcvinfo = std::ptr::read_unaligned(data.cast());
                    info.info = Some((r.rcv_sid, u32::from_be(r.rcv_ppid)));
                } else if (*c).cmsg_type == SCTP_SNDRCV
                    && dlen >= size_of::<SctpSndrcvinfo>()
                    && info.info.is_none()
                {
                    let r: SctpSndrcvinfo = std::ptr::read_unaligned(data.cast());
                    info.info = Some((r.sinfo_stream, u32::from_be(r.sinfo_ppid)));
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    info
}

/// One non-blocking `sendmsg` of a whole message with `SCTP_SNDINFO` (stream, PPID in network
/// order, RFC 6458 §5.3.4).
pub(crate) fn sendmsg(
    fd: BorrowedFd<'_>,
    data: &[u8],
    stream: u16,
    ppid: u32,
) -> io::Result<usize> {
    let info = SctpSndinfo {
        snd_sid: stream,
        snd_ppid: ppid.to_be(),
        ..Default::default()
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(size_of::<SctpSndinfo>() as u32) } as usize;
    let mut cbuf = [0u64; 8]; // 64 bytes >= CMSG_SPACE(16) = 32
    if space > std::mem::size_of_val(&cbuf) {
        // Cannot happen on Linux; checked because the kernel would read `space` bytes.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "control buffer too small",
        ));
    }
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: zeroed msghdr is valid; all pointers refer to live buffers; CMSG_FIRSTHDR is
    // non-null because msg_controllen >= sizeof(cmsghdr).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = IPPROTO_SCTP;
        (*c).cmsg_type = SCTP_SNDINFO;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<SctpSndinfo>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<SctpSndinfo>(), info);
        let n = libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        );
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// Most messages handed to one [`sendmmsg`] call (its control buffers and headers live on the
/// stack: 64 × 112 bytes).
pub(crate) const SENDMMSG_MAX: usize = 64;

/// `CMSG_SPACE(sizeof(struct sctp_sndinfo))` on Linux x86-64 and every other 64- or 32-bit
/// ABI: a 16- or 12-byte `cmsghdr` plus the 16-byte struct, rounded to `size_t`. The control
/// buffer of one message in [`sendmmsg`]; checked against `CMSG_SPACE` at run time.
const SNDINFO_SPACE_MAX: usize = 32;

/// Several whole messages in non-blocking `sendmmsg(2)` calls, each with its own
/// `SCTP_SNDINFO` (stream, PPID in network order, RFC 6458 §5.3.4), as [`sendmsg`] would send
/// them one by one. With `bundle` (kernel SCTP) in two calls: all but the last with
/// `MSG_MORE`, then the last, so that their DATA chunks are bundled into few packets.
/// `part` gives each message's bytes, stream and host-order PPID; at most
/// [`SENDMMSG_MAX`] of `msgs` are tried. Returns how many messages the kernel took (≥ 1; the
/// rest would block or failed) and, for the first of those whose length the kernel did not
/// take in full, its index and byte count. An error means the first message was not sent
/// (`EAGAIN`, `EMSGSIZE`, …), as for `sendmsg`.
pub(crate) fn sendmmsg<M>(
    fd: BorrowedFd<'_>,
    msgs: &[M],
    part: impl Fn(&M) -> (&[u8], u16, u32),
    bundle: bool,
) -> io::Result<(usize, Option<(usize, usize)>)> {
    let n = msgs.len().min(SENDMMSG_MAX);
    if n == 0 {
        return Ok((0, None));
    }
    // SAFETY: CMSG_SPACE and CMSG_LEN are pure size computations.
    let (space, clen) = unsafe {
        (
            libc::CMSG_SPACE(size_of::<SctpSndinfo>() as u32) as usize,
            libc::CMSG_LEN(size_of::<SctpSndinfo>() as u32) as usize,
        )
    };
    if space > SNDINFO_SPACE_MAX {
        // Cannot happen on Linux; checked because the kernel would read `space` bytes.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "control buffer too small",
        ));
    }
    // u64 elements: the control buffers are aligned for `cmsghdr`.
    let mut cbufs = [[0u64; SNDINFO_SPACE_MAX / 8]; SENDMMSG_MAX];
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; SENDMMSG_MAX];
    // SAFETY: an all-zero mmsghdr is a valid "no name, no iov, no control" header.
    let mut hdrs: [libc::mmsghdr; SENDMMSG_MAX] = unsafe { std::mem::zeroed() };
    for (i, m) in msgs[..n].iter().enumerate() {
        let (data, stream, ppid) = part(m);
        iovs[i] = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let info = SctpSndinfo {
            snd_sid: stream,
            snd_ppid: ppid.to_be(),
            ..Default::default()
        };
        let h = &mut hdrs[i].msg_hdr;
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
        h.msg_control = cbufs[i].as_mut_ptr().cast();
        h.msg_controllen = space as _;
        // SAFETY: the header's control buffer is `cbufs[i]`, SNDINFO_SPACE_MAX ≥ `space`
        // bytes, aligned for cmsghdr and live (not moved: arrays are not touched again except
        // through these pointers); CMSG_FIRSTHDR is non-null because msg_controllen ≥
        // sizeof(cmsghdr), and CMSG_DATA + sizeof(SctpSndinfo) = CMSG_LEN ≤ space.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(h);
            (*c).cmsg_level = IPPROTO_SCTP;
            (*c).cmsg_type = SCTP_SNDINFO;
            (*c).cmsg_len = clen as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<SctpSndinfo>(), info);
        }
    }
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    let call = |hs: &mut [libc::mmsghdr], flags: libc::c_int| {
        // SAFETY: `hs` is a sub-slice of `hdrs[..n]`: initialised headers whose iov and
        // control pointers refer to `iovs`, `cbufs` and the borrowed message bytes, all live
        // for the call with the stated lengths; the kernel writes only each header's
        // `msg_len` and reads at most `hs.len()` headers.
        unsafe { libc::sendmmsg(fd.as_raw_fd(), hs.as_mut_ptr(), hs.len() as _, flags as _) }
    };
    // All but the last message go with MSG_MORE (Linux >= 4.13 for SCTP): the kernel holds
    // their DATA chunks and the last one, sent without it, flushes them bundled into as few
    // packets as fit the path MTU (RFC 9260 §6.10), instead of one packet per message.
    // Held chunks never wait on a full buffer: the kernel sends them anyway once a packet's
    // worth is queued. An error on the last one is reported by the caller's next call, which
    // sends it alone (without MSG_MORE, so it flushes the held ones when it goes). Only if
    // that call fails for good (EMSGSIZE: a socket buffer configured below the maximum
    // message size; the default is twice the maximum) do the held chunks wait for the
    // association's next message; they are never lost.
    let sent = if n == 1 || !bundle {
        call(&mut hdrs[..n], flags)
    } else {
        let held = call(&mut hdrs[..n - 1], flags | libc::MSG_MORE);
        if held < 0 || (held as usize) < n - 1 {
            held
        } else {
            let last = call(&mut hdrs[n - 1..n], flags);
            held + last.max(0)
        }
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let sent = (sent as usize).min(n);
    let short = (0..sent).find_map(|i| {
        let want = iovs[i].iov_len;
        let got = hdrs[i].msg_len as usize;
        (got != want).then_some((i, got))
    });
    Ok((sent, short))
}

/// `poll(2)` on one descriptor: waits up to `timeout_ms` milliseconds (−1 = no limit) until
/// one of `events` (`libc::POLLIN`, `libc::POLLOUT`) is ready and returns the `revents` the
/// kernel reported (0 when the time ran out; `POLLERR`/`POLLHUP` are reported even when not
/// asked for). `EINTR` is returned as an error, for the caller to retry. Used by the blocking
/// association API ([`super::blocking`]) on its non-blocking sockets.
pub(crate) fn poll_one(
    fd: BorrowedFd<'_>,
    events: libc::c_short,
    timeout_ms: libc::c_int,
) -> io::Result<libc::c_short> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one `pollfd`, a live local that the kernel writes only `revents` of; nfds = 1
    // matches it; the descriptor is borrowed, so open for the call (invariant 1).
    let n = cvt(unsafe { libc::poll(&mut p, 1, timeout_ms) })?;
    Ok(if n == 0 { 0 } else { p.revents })
}

/// `accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)`.
pub(crate) fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: accept4 with null address pointers is valid; the new fd is owned by the result.
    let nfd = cvt(unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: nfd is a fresh descriptor nobody else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(nfd) })
}

/// Registers a socket with tokio's reactor.
pub(crate) fn register(
    fd: OwnedFd,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the `OwnedFd` is moved into the `AsyncFd`, which owns it from now on; nothing
    // else can close or replace the descriptor while it is registered.
    unsafe {
        Ok(tokio::io::unix::AsyncFd::register_with_interest(
            fd, interest,
        )?)
    }
}

/// `shutdown(fd, how)`.
pub(crate) fn shutdown(fd: BorrowedFd<'_>, how: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor borrowed for the call (open).
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), how) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_linux_sctp_h() {
        assert_eq!(size_of::<SctpSndrcvinfo>(), 32);
        assert_eq!(std::mem::offset_of!(SctpSndrcvinfo, sinfo_ppid), 8);
        assert_eq!(size_of::<SctpSndinfo>(), 16);
        assert_eq!(size_of::<SctpRcvinfo>(), 28);
        assert_eq!(std::mem::offset_of!(SctpRcvinfo, rcv_ppid), 8);
        assert_eq!(size_of::<SctpRtoinfo>(), 16);
        assert_eq!(size_of::<SctpEvent>(), 8);
        assert_eq!(size_of::<SctpInitmsg>(), 8);
        assert_eq!(size_of::<SctpEventSubscribe>(), 14);
    }

    #[test]
    fn tcp_info_rtt_on_loopback_and_sctp_status_refused_on_tcp() {
        use std::io::{Read, Write};
        use std::os::fd::AsFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut c = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (mut s, _) = l.accept().expect("accept");
        c.write_all(b"ping").expect("write");
        let mut b = [0u8; 4];
        s.read_exact(&mut b).expect("read");
        s.write_all(b"pong").expect("write");
        c.read_exact(&mut b).expect("read");
        // The handshake alone gives the connecting side an RTT sample; loopback RTT is
        // microseconds, far below a second.
        let rtt = tcp_srtt_us(c.as_fd()).expect("TCP_INFO").expect("measured");
        assert!(rtt > 0 && rtt < 1_000_000, "tcpi_rtt {rtt} us");
        // SCTP_STATUS is an SCTP-level option: a TCP socket refuses it.
        assert!(sctp_primary_srtt(c.as_fd()).is_err());
    }

    #[test]
    fn sendmmsg_sends_each_message_whole_and_in_order() {
        // No SCTP on the host kernel: a UDP socket keeps message boundaries too, and the
        // IP layer skips control messages of another level (SOL_SCTP), so the batching
        // itself (headers, iovecs, per-message control buffers, counts) is checked here;
        // the SNDINFO contents over kernel SCTP by asap's transport_sctp test in the VM rig.
        use std::os::fd::AsFd;
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        tx.connect(rx.local_addr().expect("addr")).expect("connect");
        let msgs: Vec<(Vec<u8>, u16, u32)> = (0..SENDMMSG_MAX + 6)
            .map(|i| (vec![i as u8; 1 + i * 7], i as u16, 11))
            .collect();
        fn part(m: &(Vec<u8>, u16, u32)) -> (&[u8], u16, u32) {
            (&m.0[..], m.1, m.2)
        }
        // The first call takes at most SENDMMSG_MAX, the second the rest.
        let (a, short) = sendmmsg(tx.as_fd(), &msgs, part, false).expect("sendmmsg");
        assert_eq!((a, short), (SENDMMSG_MAX, None));
        let (b, short) = sendmmsg(tx.as_fd(), &msgs[a..], part, false).expect("sendmmsg");
        assert_eq!((b, short), (6, None));
        assert_eq!(
            sendmmsg(tx.as_fd(), &msgs[..0], part, false).expect("empty"),
            (0, None)
        );
        let mut buf = vec![0u8; 2048];
        for (i, m) in msgs.iter().enumerate() {
            let n = rx.recv(&mut buf).expect("recv");
            assert_eq!(&buf[..n], &m.0[..], "message {i}");
        }
        // Nothing more: exactly one datagram per message.
        rx.set_nonblocking(true).expect("nonblocking");
        assert_eq!(
            rx.recv(&mut buf).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock)
        );
    }

    #[test]
    fn sendmmsg_bundle_sets_msg_more_on_all_but_the_last() {
        // UDP corks what is sent with MSG_MORE into one datagram and sends it with the
        // first send without the flag: the three messages arrive as one datagram, so the
        // first two carried MSG_MORE and the last did not (had it, nothing would arrive).
        // Over kernel SCTP the same flags bundle DATA chunks (transport_sctp test, VM rig).
        use std::os::fd::AsFd;
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        tx.connect(rx.local_addr().expect("addr")).expect("connect");
        let msgs: [&[u8]; 3] = [&[1; 3], &[2; 5], &[3; 7]];
        fn part<'b>(m: &'b &[u8]) -> (&'b [u8], u16, u32) {
            (m, 0, 11)
        }
        assert_eq!(
            sendmmsg(tx.as_fd(), &msgs, part, true).expect("sendmmsg"),
            (3, None)
        );
        let mut buf = vec![0u8; 64];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], &msgs.concat()[..]);
        // One message alone goes without MSG_MORE.
        assert_eq!(
            sendmmsg(tx.as_fd(), &msgs[..1], part, true).expect("sendmmsg"),
            (1, None)
        );
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], msgs[0]);
    }

    #[test]
    fn recvmmsg_fills_one_slot_per_piece_in_order() {
        // UDP keeps boundaries like SCTP (no SCTP on the host); the SCTP pieces, MSG_EOR
        // and SCTP_RCVINFO per slot are covered by asap's transport_sctp tests in the VM rig.
        use std::os::fd::AsFd;
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        tx.connect(rx.local_addr().expect("addr")).expect("connect");
        let msgs: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1 + i as usize * 3]).collect();
        for m in &msgs {
            tx.send(m).expect("send");
        }
        let mut buf = vec![0u8; RECVMMSG_MAX * 128];
        let mut slots = [RecvSlot::default(); RECVMMSG_MAX];
        let mut got = Vec::new();
        while got.len() < msgs.len() {
            let n = recvmmsg(rx.as_fd(), &mut buf, &mut slots).expect("recvmmsg");
            assert!((1..=RECVMMSG_MAX).contains(&n));
            for (i, s) in slots[..n].iter().enumerate() {
                got.push(buf[i * 128..i * 128 + s.len].to_vec());
            }
        }
        assert_eq!(got, msgs);
        // Nothing left: EAGAIN, not an empty success.
        assert_eq!(
            recvmmsg(rx.as_fd(), &mut buf, &mut slots).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock)
        );
    }

    #[test]
    fn sctp_status_layout() {
        // struct sctp_status: 24 bytes, then the packed 152-byte sctp_paddrinfo whose
        // spinfo_srtt follows assoc id (4), sockaddr_storage (128), state (4), cwnd (4).
        assert_eq!(SCTP_STATUS_LEN, 24 + 152);
        assert_eq!(SCTP_STATUS_SRTT_OFFSET, 24 + 4 + 128 + 4 + 4);
        assert_eq!(size_of::<libc::sockaddr_storage>(), 128);
    }

    #[test]
    fn jiffy_is_one_kernel_tick() {
        // CONFIG_HZ is 100, 250, 300 or 1000: a tick of 1 to 10 ms.
        let j = jiffy().expect("clock_getres");
        assert!(
            j >= std::time::Duration::from_micros(999) && j <= std::time::Duration::from_millis(10),
            "{j:?}"
        );
    }

    #[test]
    fn sockaddr_roundtrip() {
        for s in ["10.0.0.1:5000", "[2001:db8::1]:3863"] {
            let a: SocketAddr = s.parse().expect("literal");
            let packed = pack_addrs(&[a, a]);
            let (b, n) = parse_sockaddr(&packed).expect("parse");
            assert_eq!(b, a);
            let (c, _) = parse_sockaddr(&packed[n..]).expect("parse 2");
            assert_eq!(c, a);
        }
        assert!(parse_sockaddr(&[0, 0]).is_none());
    }
}
