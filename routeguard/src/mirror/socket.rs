//! NETLINK_ROUTE sockets opened inside a namespace: one listening to the route groups, one for
//! dumps. A socket stays in the namespace it was created in, so they are made on a short-lived
//! thread that has entered the namespace (`setns` affects only the calling thread). Every receive
//! has a timeout (`SO_RCVTIMEO`), so no dump waits forever on a kernel that stopped answering.

use std::{
    fs::File,
    io,
    os::fd::{AsRawFd as _, RawFd},
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::{clock::Clock, decode, event::RouteKey};

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
/// A dump socket's receive timeout; a dump gives up once the kernel has sent nothing for
/// [`DUMP_QUIET`].
const DUMP_POLL: Duration = Duration::from_secs(1);
const DUMP_QUIET: Duration = Duration::from_secs(5);
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
    #[error("the kernel sent no part of the dump for {DUMP_QUIET:?}; gave up on it")]
    Timeout,
    #[error("cannot start the mirror thread: {0}")]
    Thread(#[source] io::Error),
    #[error("cannot attach the notification filter to the listener: {0}")]
    Filter(#[source] io::Error),
}

/// A route as a notification or dump reply gave it: its identity and the kernel's bytes.
pub struct Learnt {
    pub key: RouteKey,
    /// The message body after the `nlmsghdr`.
    pub body: Box<[u8]>,
    /// Monotonic ns its lifetime runs out (IPv6 `expires`); 0 when it has none.
    pub expires_at: u64,
}

impl Learnt {
    /// The route `body` describes (`None` when it does not decode).
    pub fn from_body(body: &[u8]) -> Option<Self> {
        Self::with_expiry(body).map(|(route, _)| route)
    }

    /// The route, and its remaining lifetime in clock ticks when it has one.
    fn with_expiry(body: &[u8]) -> Option<(Self, Option<i32>)> {
        let (family, route) = match decode::route_body(body) {
            Ok(decoded) => decoded,
            Err(reason) => {
                tracing::debug!(%reason, "skipping an undecodable route");
                return None;
            }
        };
        let expires = expires_ticks(body);
        // A positive lifetime becomes a deadline on the monotonic clock.
        let expires_at = expires
            .and_then(|ticks| u64::try_from(ticks).ok())
            .map_or(0, |ticks| Clock::monotonic_ns() + ticks * NS_PER_CLOCK_TICK);
        let learnt = Learnt {
            key: RouteKey::of(family, &route),
            body: body.into(),
            expires_at,
        };
        Some((learnt, expires))
    }
}

pub enum Update {
    /// `replaced`: sent with NLM_F_REPLACE, so the route with the same FIB key is gone. `seq`
    /// and `port` are the sequence number and port id of the request that added it (the kernel
    /// echoes them).
    Added {
        route: Learnt,
        replaced: bool,
        seq: u32,
        port: u32,
    },
    /// `by_kernel`: announced with portid 0, i.e. no request asked for it. `past_expiry`: the
    /// notification says the route's lifetime had run out (negative `rta_expires`).
    Deleted {
        route: Learnt,
        by_kernel: bool,
        past_expiry: bool,
    },
    /// A rule added (or replaced).
    RuleAdded {
        family: Option<crate::event::Family>,
        rule: crate::event::Rule,
    },
    /// A rule removed.
    RuleDeleted {
        family: Option<crate::event::Family>,
        rule: crate::event::Rule,
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

/// Opens (listener, dumper) inside the namespace of the nsfs file `path`. `filter` (the `notify`
/// eBPF socket filter) is attached to the listener: it copies the deletions a request made into
/// the ring and drops those of routes, so a burst of them never reaches or wakes the listener.
/// Without it the listener hears every deletion.
pub fn open_in(
    path: &Path,
    filter: Option<RawFd>,
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
        if let Some(program) = filter {
            // SO_ATTACH_BPF takes the program's fd; the socket keeps its own reference.
            let program: libc::c_int = program;
            set_socket_option(listener.as_raw_fd(), libc::SO_ATTACH_BPF, &program)
                .map_err(MirrorError::Filter)?;
        }
        let mut dumper = Socket::new(NETLINK_ROUTE).map_err(MirrorError::Socket)?;
        dumper.bind_auto().map_err(MirrorError::Socket)?;
        dumper.set_rx_buf_sz(RCVBUF).map_err(MirrorError::Socket)?;
        set_timeout(dumper.as_raw_fd(), DUMP_POLL).map_err(MirrorError::Socket)?;
        Ok((RouteSocket::new(listener), RouteSocket::new(dumper)))
    })
    .join()
    .map_err(|_| MirrorError::Thread(io::Error::other("the namespace thread panicked")))?
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
    pub fn dump_routes(&self) -> Result<Vec<Learnt>, MirrorError> {
        let mut routes = Vec::new();
        // struct rtmsg, AF_UNSPEC: every family, every table.
        self.dump(RTM_GETROUTE, &[0u8; RTMSG_LEN], |msg_type, body| {
            if msg_type == RTM_NEWROUTE {
                routes.extend(Learnt::from_body(body));
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
        let mut heard = Instant::now();
        loop {
            let n = match self.recv(&mut buf) {
                // Multicast notifications were dropped; the dump's own replies never are (the
                // kernel paces them by our reads): read on, and let the caller dump again.
                Err(MirrorError::Overflow) => {
                    self.lost_during_dump.store(true, Ordering::Relaxed);
                    continue;
                }
                // The receive timed out: the kernel is slow (or never answers), not gone.
                Err(MirrorError::Socket(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    if heard.elapsed() >= DUMP_QUIET {
                        return Err(MirrorError::Timeout);
                    }
                    continue;
                }
                other => other?,
            };
            heard = Instant::now();
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
                    RTM_NEWROUTE => {
                        updates.extend(Learnt::from_body(body).map(|route| Update::Added {
                            route,
                            replaced: hdr.flags & NLM_F_REPLACE != 0,
                            seq: hdr.seq,
                            port: hdr.port,
                        }))
                    }
                    RTM_DELROUTE => {
                        updates.extend(Learnt::with_expiry(body).map(|(route, expires)| {
                            Update::Deleted {
                                route,
                                by_kernel: hdr.port == 0,
                                past_expiry: expires.is_some_and(|ticks| ticks < 0),
                            }
                        }))
                    }
                    RTM_NEWRULE => match decode::rule_body(body) {
                        Ok((family, rule)) => updates.push(Update::RuleAdded { family, rule }),
                        Err(reason) => tracing::debug!(%reason, "skipping an undecodable rule"),
                    },
                    RTM_DELRULE => match decode::rule_body(body) {
                        Ok((family, rule)) => updates.push(Update::RuleDeleted { family, rule }),
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
