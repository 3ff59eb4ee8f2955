//! Re-adding an object: the kernel's own description of it, sent back as RTM_NEWROUTE /
//! RTM_NEWRULE with NLM_F_CREATE | NLM_F_EXCL on a NETLINK_ROUTE socket inside its namespace.
//!
//! The body is the one the kernel sent when it removed (or dumped) the object, so every
//! attribute comes back — multipath nexthops, metrics, `suppress_prefixlength`, uid ranges —
//! including those routeguard does not decode. Only state the kernel reports but would not take
//! back as configuration is cleared: the nexthop liveness flags (RTNH_F_DEAD / LINKDOWN, which
//! `fib_create_info` would copy into the new route) and RTA_CACHEINFO.

use std::{
    fs::{self, File},
    io,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

use crate::mirror::socket::set_timeout;

pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_NEWRULE: u16 = 32;
pub const RTM_GETROUTE: u16 = 26;
pub const RTM_GETRULE: u16 = 34;
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
/// `struct rtmsg` is 12 bytes; `rtm_flags` is its last u32.
const RTMSG_LEN: usize = 12;
const RTA_MULTIPATH: u16 = 9;
const RTA_CACHEINFO: u16 = 12;
/// The only nexthop flag that is configuration rather than state (`ip route add … onlink`).
const RTNH_F_ONLINK: u32 = 4;
/// A reply slower than this means the kernel is stuck; the restore is reported failed.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("the network namespace (inode {0}) is gone or not reachable from here")]
    NoNamespace(u32),
    #[error("cannot enter the network namespace {path}: {source} (needs CAP_SYS_ADMIN)")]
    Setns { path: String, source: io::Error },
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("no reply from the kernel within {REPLY_TIMEOUT:?}")]
    Timeout,
}

/// A NETLINK_ROUTE socket made inside one namespace (a socket stays in the namespace it was
/// created in, so it is made on a short-lived thread that entered it: `setns` changes only the
/// calling thread).
pub struct NetnsSocket {
    socket: Socket,
    seq: u32,
}

/// The nsfs file of namespace `inode`: ours, a /run/netns entry, or the actor's.
pub fn netns_path(inode: u32, actor_pid: Option<u32>) -> Option<PathBuf> {
    let ino_of = |p: &Path| fs::metadata(p).ok().map(|m| m.ino());
    let mut candidates = vec![PathBuf::from("/proc/self/ns/net")];
    if let Ok(dir) = fs::read_dir("/run/netns") {
        candidates.extend(dir.flatten().map(|e| e.path()));
    }
    if let Some(pid) = actor_pid {
        candidates.push(PathBuf::from(format!("/proc/{pid}/ns/net")));
    }
    candidates
        .into_iter()
        .find(|p| ino_of(p) == Some(u64::from(inode)))
}

impl NetnsSocket {
    pub fn open(path: &Path) -> Result<Self, SocketError> {
        let path = path.to_path_buf();
        std::thread::spawn(move || -> Result<Self, SocketError> {
            let setns_err = |source| SocketError::Setns {
                path: path.display().to_string(),
                source,
            };
            let file = File::open(&path).map_err(setns_err)?;
            // SAFETY: setns on a valid nsfs fd; it changes only this short-lived thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(setns_err(io::Error::last_os_error()));
            }
            let mut socket = Socket::new(NETLINK_ROUTE).map_err(SocketError::Socket)?;
            socket.bind_auto().map_err(SocketError::Socket)?;
            set_timeout(socket.as_raw_fd(), REPLY_TIMEOUT).map_err(SocketError::Socket)?;
            Ok(Self { socket, seq: 1 })
        })
        .join()
        .map_err(|_| SocketError::Socket(io::Error::other("the namespace thread panicked")))?
    }

    /// Sends `body` as a new object of `msg_type` and waits for the kernel's ack: `Ok(Ok(()))`
    /// when it was created, `Ok(Err(errno))` when the kernel refused it.
    pub fn create(&mut self, msg_type: u16, body: &[u8]) -> Result<Result<(), i32>, SocketError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let len = NLMSG_HDRLEN + body.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&msg_type.to_ne_bytes());
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        self.socket.send(&msg, 0).map_err(SocketError::Socket)?;
        let mut buf = Vec::with_capacity(8 << 10);
        loop {
            buf.clear();
            match self.socket.recv(&mut buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(SocketError::Timeout)
                }
                Err(e) => return Err(SocketError::Socket(e)),
            }
            if let Some(errno) = ack_errno(&buf, seq) {
                return Ok(if errno == 0 { Ok(()) } else { Err(errno) });
            }
        }
    }
}

impl NetnsSocket {
    /// Every object of a dump request (`RTM_GETRULE` / `RTM_GETROUTE`, all families): the bodies
    /// of the replies.
    pub fn dump(&mut self, msg_type: u16) -> Result<Vec<Vec<u8>>, SocketError> {
        const NLM_F_DUMP: u16 = 0x300;
        const NLMSG_DONE: u16 = 3;
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut msg = Vec::with_capacity(NLMSG_HDRLEN + RTMSG_LEN);
        msg.extend_from_slice(&((NLMSG_HDRLEN + RTMSG_LEN) as u32).to_ne_bytes());
        msg.extend_from_slice(&msg_type.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        // struct rtmsg / fib_rule_hdr (both 12 bytes), AF_UNSPEC: every family.
        msg.extend_from_slice(&[0u8; RTMSG_LEN]);
        self.socket.send(&msg, 0).map_err(SocketError::Socket)?;
        let mut bodies = Vec::new();
        let mut buf = Vec::with_capacity(64 << 10);
        loop {
            buf.clear();
            match self.socket.recv(&mut buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(SocketError::Timeout)
                }
                Err(e) => return Err(SocketError::Socket(e)),
            }
            for (kind, s, body) in messages(&buf) {
                match kind {
                    _ if s != seq => {}
                    NLMSG_DONE => return Ok(bodies),
                    NLMSG_ERROR => {
                        let errno = body
                            .get(..4)
                            .map_or(0, |b| -i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        return Err(SocketError::Socket(io::Error::from_raw_os_error(errno)));
                    }
                    _ => bodies.push(body.to_vec()),
                }
            }
        }
    }
}

/// The messages of one receive as (type, seq, body), bounds-checked.
fn messages(mut buf: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let word = |b: &[u8], at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = word(buf, 0) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            break;
        }
        out.push((
            u16::from_ne_bytes([buf[4], buf[5]]),
            word(buf, 8),
            &buf[NLMSG_HDRLEN..len],
        ));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

/// The positive errno of the NLMSG_ERROR for `seq` in `buf` (0 for an ack), if there is one.
fn ack_errno(buf: &[u8], seq: u32) -> Option<i32> {
    messages(buf).into_iter().find_map(|(kind, s, body)| {
        (kind == NLMSG_ERROR && s == seq && body.len() >= 4)
            .then(|| -i32::from_ne_bytes([body[0], body[1], body[2], body[3]]))
    })
}

/// The body of an RTM_NEWROUTE that re-creates the route the kernel described in `kernel`.
pub fn route_body(kernel: &[u8]) -> Result<Vec<u8>, String> {
    if kernel.len() < RTMSG_LEN {
        return Err(format!(
            "the kernel's route description is {} bytes, shorter than struct rtmsg",
            kernel.len()
        ));
    }
    let mut out = kernel[..RTMSG_LEN].to_vec();
    let flags = u32::from_ne_bytes(out[8..12].try_into().unwrap_or_default()) & RTNH_F_ONLINK;
    out[8..12].copy_from_slice(&flags.to_ne_bytes());
    for (kind, attr) in attributes(&kernel[RTMSG_LEN..])? {
        match kind & 0x3fff {
            RTA_CACHEINFO => {}
            RTA_MULTIPATH => {
                let mut hops = attr.to_vec();
                clear_nexthop_state(&mut hops[4..]);
                out.extend_from_slice(&hops);
            }
            _ => out.extend_from_slice(attr),
        }
        out.resize(out.len().next_multiple_of(4), 0);
    }
    Ok(out)
}

/// The body of an RTM_NEWRULE that re-creates the rule the kernel described: the same bytes.
/// (`fib_nl_fill_rule` writes exactly the FRA_* attributes `fib_nl2rule` reads back.)
pub fn rule_body(kernel: &[u8]) -> Result<Vec<u8>, String> {
    const FIB_RULE_HDR_LEN: usize = 12;
    if kernel.len() < FIB_RULE_HDR_LEN {
        return Err(format!(
            "the kernel's rule description is {} bytes, shorter than struct fib_rule_hdr",
            kernel.len()
        ));
    }
    attributes(&kernel[FIB_RULE_HDR_LEN..])?;
    Ok(kernel.to_vec())
}

/// Top-level attributes as (type, whole attribute including its 4-byte header).
fn attributes(mut buf: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        if len < 4 || len > buf.len() {
            return Err(format!(
                "a malformed attribute (length {len}, {} bytes left)",
                buf.len()
            ));
        }
        out.push((u16::from_ne_bytes([buf[2], buf[3]]), &buf[..len]));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    Ok(out)
}

/// Each `struct rtnexthop` (len u16, flags u8, hops u8, ifindex i32, attributes) keeps only
/// RTNH_F_ONLINK of its flags.
fn clear_nexthop_state(mut hops: &mut [u8]) {
    while hops.len() >= 8 {
        let len = usize::from(u16::from_ne_bytes([hops[0], hops[1]]));
        if len < 8 || len > hops.len() {
            return;
        }
        hops[2] &= RTNH_F_ONLINK as u8;
        let next = len.next_multiple_of(4).min(hops.len());
        hops = &mut hops[next..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(a.len().next_multiple_of(4), 0);
        a
    }

    #[test]
    fn route_body_drops_state_and_keeps_configuration() {
        // rtmsg: AF_INET, /24, table 77 via RTA_TABLE, proto static, flags LINKDOWN|ONLINK|DEAD.
        let mut body = vec![2, 24, 0, 0, 254, 4, 0, 1];
        body.extend_from_slice(&(0x10u32 | 0x4 | 0x1).to_ne_bytes());
        let table = attr(15, &77u32.to_ne_bytes());
        let dst = attr(1, &[10, 77, 1, 0]);
        let cache = attr(RTA_CACHEINFO, &[0; 32]);
        // One rtnexthop: len 8, flags DEAD|ONLINK, hops 0, ifindex 3.
        let mut hop = 8u16.to_ne_bytes().to_vec();
        hop.extend_from_slice(&[0x1 | 0x4, 0]);
        hop.extend_from_slice(&3i32.to_ne_bytes());
        let multipath = attr(RTA_MULTIPATH, &hop);
        for a in [&table, &dst, &cache, &multipath] {
            body.extend_from_slice(a);
        }
        let out = route_body(&body).unwrap();
        assert_eq!(u32::from_ne_bytes(out[8..12].try_into().unwrap()), 0x4);
        let attrs = attributes(&out[12..]).unwrap();
        let kinds: Vec<u16> = attrs.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [15, 1, RTA_MULTIPATH]);
        assert_eq!(attrs[0].1, &table[..]);
        assert_eq!(attrs[2].1[4 + 2], 0x4, "nexthop flags keep only ONLINK");
    }

    #[test]
    fn malformed_bodies_are_refused_not_sent() {
        assert!(route_body(&[2, 24])
            .unwrap_err()
            .contains("shorter than struct rtmsg"));
        let mut body = vec![0u8; 12];
        body.extend_from_slice(&[200, 0, 1, 0]);
        assert!(rule_body(&body)
            .unwrap_err()
            .contains("malformed attribute"));
    }

    #[test]
    fn ack_errno_finds_our_sequence_number() {
        let msg = |seq: u32, err: i32| {
            let mut m = 36u32.to_ne_bytes().to_vec();
            m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            m.extend_from_slice(&0u16.to_ne_bytes());
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&0u32.to_ne_bytes());
            m.extend_from_slice(&err.to_ne_bytes());
            m.extend_from_slice(&[0; 16]);
            m
        };
        let mut both = msg(6, 0);
        both.extend(msg(7, -libc::EEXIST));
        assert_eq!(ack_errno(&both, 7), Some(libc::EEXIST));
        assert_eq!(ack_errno(&both, 6), Some(0));
        assert_eq!(ack_errno(&both, 8), None);
    }
}
