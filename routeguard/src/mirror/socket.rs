//! The mirror's sockets in each namespace: one listening to the route groups, one for dumps
//! (opened by [`crate::netlink`], inside the namespace); what their messages mean to the mirror.

use std::{
    io,
    os::fd::RawFd,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::{
    clock::Clock,
    decode,
    event::{Family, RouteKey, Rule},
    netlink::{
        attrs, messages,
        uapi::{
            FIB_RULE_HDR_LEN, NLM_F_REPLACE, RTA_CACHEINFO, RTA_CACHEINFO_EXPIRES,
            RTMGRP_IPV4_ROUTE, RTMGRP_IPV4_RULE, RTMGRP_IPV6_ROUTE, RTMSG_LEN, RTM_DELROUTE,
            RTM_DELRULE, RTM_GETROUTE, RTM_GETRULE, RTM_NEWROUTE, RTM_NEWRULE, RTNLGRP_IPV6_RULE,
        },
        Options, RouteSocket, SocketError, RECV_BUF,
    },
};

/// `USER_HZ`: `rta_expires` is in these ticks (`jiffies_to_clock_t`).
const NS_PER_CLOCK_TICK: u64 = 10_000_000;
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
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("cannot start the mirror thread: {0}")]
    Thread(#[source] io::Error),
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
    RuleAdded { family: Option<Family>, rule: Rule },
    /// A rule removed.
    RuleDeleted { family: Option<Family>, rule: Rule },
}

/// The socket that hears a namespace's route and rule notifications.
pub struct Listener {
    socket: RouteSocket,
    stop: Arc<AtomicBool>,
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
pub fn open_in(path: &Path, filter: Option<RawFd>) -> Result<(Listener, RouteSocket), MirrorError> {
    let listener = Options {
        groups: RTMGRP_IPV4_ROUTE | RTMGRP_IPV4_RULE | RTMGRP_IPV6_ROUTE,
        join: vec![RTNLGRP_IPV6_RULE],
        rcvbuf: Some(listener_rcvbuf()),
        poll: POLL,
        quiet: DUMP_QUIET,
        filter,
    };
    let dumper = Options {
        rcvbuf: Some(RCVBUF),
        poll: DUMP_POLL,
        quiet: DUMP_QUIET,
        ..Options::default()
    };
    let [listener, dumper] = RouteSocket::open_in(path, [listener, dumper])?;
    let listener = Listener {
        socket: listener,
        stop: Arc::default(),
    };
    Ok((listener, dumper))
}

fn listener_rcvbuf() -> usize {
    std::env::var(RCVBUF_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RCVBUF)
}

/// Every route of the namespace `socket` is in, all tables, both families.
pub fn dump_routes(socket: &RouteSocket) -> Result<Vec<Learnt>, MirrorError> {
    let mut routes = Vec::new();
    // struct rtmsg, AF_UNSPEC: every family, every table.
    socket.dump(RTM_GETROUTE, &[0u8; RTMSG_LEN], |m| {
        if m.header.msg_type == RTM_NEWROUTE {
            routes.extend(Learnt::from_body(m.body));
        }
    })?;
    Ok(routes)
}

/// Every policy rule of the namespace `socket` is in, both families.
pub fn dump_rules(socket: &RouteSocket) -> Result<Vec<(Option<Family>, Rule)>, MirrorError> {
    let mut rules = Vec::new();
    // struct fib_rule_hdr, AF_UNSPEC: both families.
    socket.dump(RTM_GETRULE, &[0u8; FIB_RULE_HDR_LEN], |m| {
        if m.header.msg_type == RTM_NEWRULE {
            match decode::rule_body(m.body) {
                Ok(rule) => rules.push(rule),
                Err(reason) => tracing::debug!(%reason, "skipping an undecodable rule"),
            }
        }
    })?;
    Ok(rules)
}

impl Listener {
    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::clone(&self.stop))
    }

    /// The socket, for the re-dumps after an overflow.
    pub fn socket(&self) -> &RouteSocket {
        &self.socket
    }

    /// Blocks until notifications arrive (or the poll interval passes, then returns none);
    /// `Ok(None)` once told to stop. `buf` is the caller's, reused: a burst brings one
    /// notification per receive.
    pub fn next_notifications(
        &self,
        buf: &mut Vec<u8>,
    ) -> Result<Option<Vec<Update>>, SocketError> {
        buf.reserve(RECV_BUF);
        let n = loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            if let Some(n) = self.socket.recv(buf)? {
                break n;
            }
        };
        let mut updates = Vec::new();
        for m in messages(&buf[..n]).map_while(Result::ok) {
            let (hdr, body) = (m.header, m.body);
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
        Ok(Some(updates))
    }
}

/// `rta_expires` of the `RTA_CACHEINFO` attribute, when the route has a lifetime (0 means none).
fn expires_ticks(body: &[u8]) -> Option<i32> {
    let cacheinfo = attrs(body.get(RTMSG_LEN..)?)
        .map_while(Result::ok)
        .find(|a| a.kind == RTA_CACHEINFO)?;
    let b = cacheinfo
        .value
        .get(RTA_CACHEINFO_EXPIRES..RTA_CACHEINFO_EXPIRES + 4)?;
    Some(i32::from_ne_bytes([b[0], b[1], b[2], b[3]])).filter(|t| *t != 0)
}
