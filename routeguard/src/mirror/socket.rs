//! NETLINK_ROUTE sockets opened inside a namespace: one listening to the route groups, one for
//! dumps. A socket stays in the namespace it was created in, so they are made on a short-lived
//! thread that has entered the namespace (`setns` affects only the calling thread).

use std::{
    fs::File,
    io,
    os::fd::{AsRawFd as _, RawFd},
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::MirroredRoute;
use crate::{clock::Clock, decode, event::KernelBody};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWRULE: u16 = 32;
const RTM_GETRULE: u16 = 34;
/// `RTA_CACHEINFO`: a `struct rta_cacheinfo`, whose `rta_expires` (s32, clock ticks) is the
/// route's remaining lifetime (IPv6 `expires`); negative once it has run out.
const RTA_CACHEINFO: u16 = 12;
const RTA_EXPIRES_AT: usize = 8;
/// `USER_HZ`: `rta_expires` is in these ticks (`jiffies_to_clock_t`).
const NS_PER_CLOCK_TICK: u64 = 10_000_000;
/// `sizeof(struct rtmsg)`.
const RTMSG_LEN: usize = 12;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
/// Legacy group bits (`RTMGRP_IPV4_ROUTE`, `RTMGRP_IPV4_RULE`, `RTMGRP_IPV6_ROUTE`) for `bind`.
const ROUTE_GROUPS: u32 = 0x40 | 0x80 | 0x400;
/// `RTNLGRP_IPV6_RULE` has no legacy bit: joined by number.
const RTNLGRP_IPV6_RULE: u32 = 19;
const RTM_DELRULE: u16 = 33;
/// A listener wakes this often to see whether it should stop.
const POLL: Duration = Duration::from_millis(250);
const RCVBUF: usize = 8 << 20;
/// Overrides the listener's receive buffer size (bytes). Only for tests that must make the
/// notification socket overflow; the kernel doubles it and enforces a minimum of about 2 KiB.
pub const RCVBUF_ENV: &str = "ROUTEGUARD_MIRROR_RCVBUF";

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("cannot enter the network namespace {path}: {source} (needs CAP_SYS_ADMIN)")]
    Setns { path: String, source: io::Error },
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("the kernel refused the route dump: errno {0}")]
    Refused(i32),
    #[error("the notification socket overflowed (ENOBUFS); a re-dump is needed")]
    Overflow,
    #[error("cannot start the mirror thread: {0}")]
    Thread(#[source] io::Error),
}

pub enum Update {
    /// `replaced`: sent with NLM_F_REPLACE, so the route with the same FIB key is gone. `seq`
    /// is the sequence number of the request that added it (the kernel echoes it).
    Added {
        route: MirroredRoute,
        replaced: bool,
        seq: u32,
    },
    /// `by_kernel`: announced with portid 0, i.e. no request asked for it. `seq` is the
    /// sequence number of the request that did (the kernel echoes it). `past_expiry`: the
    /// notification says the route's lifetime had run out (negative `rta_expires`).
    Deleted {
        route: MirroredRoute,
        by_kernel: bool,
        seq: u32,
        past_expiry: bool,
    },
    /// A rule added (or replaced).
    RuleAdded {
        family: Option<crate::event::Family>,
        rule: crate::event::Rule,
    },
    /// A rule removed by the request with sequence number `seq`, and the kernel's description
    /// of it.
    RuleDeleted {
        family: Option<crate::event::Family>,
        rule: crate::event::Rule,
        kernel: KernelBody,
        seq: u32,
    },
}

pub struct RouteSocket {
    socket: Socket,
    seq: AtomicU32,
    stop: Arc<AtomicBool>,
    /// Notifications were dropped (ENOBUFS) while a dump was being read on this socket: the
    /// dump itself is complete, but what changed after it passed an entry may be lost.
    lost_during_dump: AtomicBool,
}

/// Tells a listener thread to close its socket (and so release its namespace).
#[derive(Clone)]
pub struct Stopper(Arc<AtomicBool>);

impl Stopper {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Opens (listener, dumper) inside the namespace of the nsfs file `path`. With
/// `no_route_deletions`, the listener never receives RTM_DELROUTE (see [`drop_route_deletions`]).
pub fn open_in(
    path: &Path,
    no_route_deletions: bool,
) -> Result<(RouteSocket, RouteSocket), MirrorError> {
    let path = path.to_path_buf();
    std::thread::spawn(move || -> Result<_, MirrorError> {
        let file = File::open(&path).map_err(|source| MirrorError::Open {
            path: path.display().to_string(),
            source,
        })?;
        // SAFETY: setns on a valid nsfs fd; it changes only this short-lived thread's namespace.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            let source = io::Error::last_os_error();
            return Err(MirrorError::Setns {
                path: path.display().to_string(),
                source,
            });
        }
        let mut listener = Socket::new(NETLINK_ROUTE).map_err(MirrorError::Socket)?;
        listener
            .bind(&SocketAddr::new(0, ROUTE_GROUPS))
            .map_err(MirrorError::Socket)?;
        listener
            .set_rx_buf_sz(listener_rcvbuf())
            .map_err(MirrorError::Socket)?;
        listener
            .add_membership(RTNLGRP_IPV6_RULE)
            .map_err(MirrorError::Socket)?;
        set_timeout(listener.as_raw_fd(), POLL).map_err(MirrorError::Socket)?;
        if no_route_deletions {
            drop_route_deletions(listener.as_raw_fd()).map_err(MirrorError::Socket)?;
        }
        let mut dumper = Socket::new(NETLINK_ROUTE).map_err(MirrorError::Socket)?;
        dumper.bind_auto().map_err(MirrorError::Socket)?;
        dumper.set_rx_buf_sz(RCVBUF).map_err(MirrorError::Socket)?;
        Ok((RouteSocket::new(listener), RouteSocket::new(dumper)))
    })
    .join()
    .map_err(|_| MirrorError::Thread(io::Error::other("the namespace thread panicked")))?
}

/// Attaches a classic BPF socket filter that drops every RTM_DELROUTE notification in the
/// kernel, in the deleting process's context: nothing is queued and nobody is woken (each
/// delivered notification wakes the listener thread). A notification is one message, so its
/// type is the 16 bits at offset 4; the filter's load reads them big-endian.
fn drop_route_deletions(fd: RawFd) -> io::Result<()> {
    const LD_H_ABS: u16 = 0x28;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let deletion = u32::from(u16::from_be_bytes(RTM_DELROUTE.to_ne_bytes()));
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut program = [
        op(LD_H_ABS, 0, 0, 4),
        // Equal: the next instruction (drop); else the one after (keep all of it).
        op(JEQ_K, 0, 1, deletion),
        op(RET_K, 0, 0, 0),
        op(RET_K, 0, 0, u32::MAX),
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // `fprog` points at `program`, which outlives the call; the kernel copies both.
    set_socket_option(fd, libc::SO_ATTACH_FILTER, &fprog)
}

fn listener_rcvbuf() -> usize {
    std::env::var(RCVBUF_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RCVBUF)
}

/// `SO_RCVTIMEO`: a blocking receive on `fd` gives up (EAGAIN) after `timeout`.
pub(crate) fn set_timeout(fd: RawFd, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as _,
        tv_usec: timeout.subsec_micros() as _,
    };
    set_socket_option(fd, libc::SO_RCVTIMEO, &tv)
}

/// `setsockopt(fd, SOL_SOCKET, name, value)`.
fn set_socket_option<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the size passed; the kernel copies it and checks `fd`.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl RouteSocket {
    fn new(socket: Socket) -> Self {
        Self {
            socket,
            seq: AtomicU32::new(1),
            stop: Arc::default(),
            lost_during_dump: AtomicBool::new(false),
        }
    }

    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::clone(&self.stop))
    }

    /// Every route of the namespace, all tables, both families.
    pub fn dump_routes(&self) -> Result<Vec<MirroredRoute>, MirrorError> {
        let mut routes = Vec::new();
        // struct rtmsg, AF_UNSPEC: every family, every table.
        self.dump(RTM_GETROUTE, &[0u8; RTMSG_LEN], |msg_type, body| {
            if msg_type == RTM_NEWROUTE {
                routes.extend(route(body).map(|(route, _)| route));
            }
        })?;
        Ok(routes)
    }

    /// Every policy rule of the namespace, both families.
    pub fn dump_rules(
        &self,
    ) -> Result<Vec<(Option<crate::event::Family>, crate::event::Rule)>, MirrorError> {
        let mut rules = Vec::new();
        // struct fib_rule_hdr (12 bytes), AF_UNSPEC: both families.
        self.dump(RTM_GETRULE, &[0u8; 12], |msg_type, body| {
            if msg_type == RTM_NEWRULE {
                match decode::rule_body(body) {
                    Ok(rule) => rules.push(rule),
                    Err(reason) => tracing::debug!(%reason, "skipping an undecodable rule"),
                }
            }
        })?;
        Ok(rules)
    }

    /// Sends a dump request of `request_type` with `body` and hands each reply message (type,
    /// body) to `each` until the dump is done.
    fn dump(
        &self,
        request_type: u16,
        body: &[u8],
        mut each: impl FnMut(u16, &[u8]),
    ) -> Result<(), MirrorError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let len = NLMSG_HDRLEN + body.len();
        let mut req = Vec::with_capacity(len);
        req.extend_from_slice(&(len as u32).to_ne_bytes());
        req.extend_from_slice(&request_type.to_ne_bytes());
        req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req.extend_from_slice(&seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(body);
        self.socket.send(&req, 0).map_err(MirrorError::Socket)?;
        let mut buf = Vec::with_capacity(RECV_BUF);
        loop {
            let n = match self.recv(&mut buf) {
                // Multicast notifications were dropped; the dump's own replies never are (the
                // kernel paces them by our reads): read on, and let the caller dump again.
                Err(MirrorError::Overflow) => {
                    self.lost_during_dump.store(true, Ordering::Relaxed);
                    continue;
                }
                other => other?,
            };
            for (hdr, body) in messages(&buf[..n]) {
                if hdr.seq != seq {
                    continue; // a notification that raced the dump: the dump covers it
                }
                match hdr.msg_type {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let errno = body
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        return Err(MirrorError::Refused(-errno));
                    }
                    other => each(other, body),
                }
            }
        }
    }

    /// Whether notifications were lost while a dump was read since the last call.
    pub fn take_lost_during_dump(&self) -> bool {
        self.lost_during_dump.swap(false, Ordering::Relaxed)
    }

    /// Blocks until notifications arrive (or the poll interval passes, then returns none).
    /// `buf` is the caller's, reused: a burst brings one notification per receive.
    pub fn next_notifications(&self, buf: &mut Vec<u8>) -> Result<Vec<Update>, MirrorError> {
        buf.reserve(RECV_BUF);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(MirrorError::Socket(io::Error::other("stopped")));
            }
            let n = match self.recv(buf) {
                Ok(n) => n,
                Err(MirrorError::Socket(e)) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            let mut updates = Vec::new();
            for (hdr, body) in messages(&buf[..n]) {
                match hdr.msg_type {
                    RTM_NEWROUTE => updates.extend(route(body).map(|(route, _)| Update::Added {
                        route,
                        replaced: hdr.flags & NLM_F_REPLACE != 0,
                        seq: hdr.seq,
                    })),
                    RTM_DELROUTE => {
                        updates.extend(route(body).map(|(route, expires)| Update::Deleted {
                            route,
                            by_kernel: hdr.port == 0,
                            seq: hdr.seq,
                            past_expiry: expires.is_some_and(|ticks| ticks < 0),
                        }))
                    }
                    RTM_NEWRULE => match decode::rule_body(body) {
                        Ok((family, rule)) => updates.push(Update::RuleAdded { family, rule }),
                        Err(reason) => tracing::debug!(%reason, "skipping an undecodable rule"),
                    },
                    RTM_DELRULE => match decode::rule_body(body) {
                        Ok((family, rule)) => updates.push(Update::RuleDeleted {
                            family,
                            rule,
                            kernel: KernelBody::new(body),
                            seq: hdr.seq,
                        }),
                        Err(reason) => tracing::debug!(%reason, "skipping an undecodable rule"),
                    },
                    _ => {}
                }
            }
            return Ok(updates);
        }
    }

    fn recv(&self, buf: &mut Vec<u8>) -> Result<usize, MirrorError> {
        buf.clear();
        match self.socket.recv(buf, 0) {
            Ok(n) => Ok(n),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Err(MirrorError::Overflow),
            Err(e) => Err(MirrorError::Socket(e)),
        }
    }
}

/// Receive buffer capacity: a dump's batch of messages (the kernel fills up to 32 KiB).
pub const RECV_BUF: usize = 64 << 10;

struct Header {
    msg_type: u16,
    flags: u16,
    seq: u32,
    port: u32,
}

/// The netlink messages of one receive (kernel-written, so well-formed; still bounds-checked).
fn messages(mut buf: &[u8]) -> Vec<(Header, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let word = |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let len = word(0) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            break;
        }
        let header = Header {
            msg_type: u16::from_ne_bytes([buf[4], buf[5]]),
            flags: u16::from_ne_bytes([buf[6], buf[7]]),
            seq: word(8),
            port: word(12),
        };
        out.push((header, &buf[NLMSG_HDRLEN..len]));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

/// The route a message describes, and its remaining lifetime in clock ticks when it has one.
fn route(body: &[u8]) -> Option<(MirroredRoute, Option<i32>)> {
    match decode::route_body(body) {
        Ok((family, route)) => {
            let expires = expires_ticks(body);
            // A positive lifetime becomes a deadline on the monotonic clock.
            let expires_at = expires
                .and_then(|ticks| u64::try_from(ticks).ok())
                .map(|ticks| Clock::monotonic_ns() + ticks * NS_PER_CLOCK_TICK);
            Some((
                MirroredRoute {
                    family,
                    route,
                    kernel: KernelBody::new(body),
                    expires_at,
                },
                expires,
            ))
        }
        Err(reason) => {
            tracing::debug!(%reason, "skipping an undecodable route notification");
            None
        }
    }
}

/// `rta_expires` of the `RTA_CACHEINFO` attribute, when the route has a lifetime (0 means none).
fn expires_ticks(body: &[u8]) -> Option<i32> {
    let mut attrs = body.get(RTMSG_LEN..)?;
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == RTA_CACHEINFO {
            let at = 4 + RTA_EXPIRES_AT;
            let b = attrs.get(at..at + 4)?;
            return Some(i32::from_ne_bytes([b[0], b[1], b[2], b[3]])).filter(|t| *t != 0);
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}
