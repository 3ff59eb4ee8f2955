//! NETLINK_ROUTE sockets: opened with the options a reader needs (groups, buffer, receive
//! timeout, a socket filter), in the calling thread's namespace or, through
//! [`RouteSocket::open_in`], in another one; dumps, acknowledged requests, and receives that
//! tell an overflow (ENOBUFS) apart from silence. Every receive has a timeout (`SO_RCVTIMEO`),
//! so nothing waits forever on a kernel that stopped answering.

use std::{
    io,
    os::fd::{AsRawFd as _, RawFd},
    path::Path,
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::{Duration, Instant},
};

use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::{
    message::{self, messages, Message},
    netns::{self, NetnsError},
    uapi::{
        message_name, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, RTM_GETROUTE,
        RTM_GETRULE,
    },
};

/// Receive buffer capacity: a dump's batch of messages (the kernel fills up to 32 KiB).
pub const RECV_BUF: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("netlink socket: {0}")]
    Io(#[source] io::Error),
    #[error("cannot attach the notification filter to the listener: {0}")]
    Filter(#[source] io::Error),
    #[error("the kernel refused the {} dump: errno {errno}", dump_name(*.request))]
    Refused { request: u16, errno: i32 },
    #[error("the notification socket overflowed (ENOBUFS); a re-dump is needed")]
    Overflow,
    #[error("no reply from the kernel within {0:?}")]
    Timeout(Duration),
}

/// What a dump request asks for, in words.
fn dump_name(request: u16) -> &'static str {
    match request {
        RTM_GETROUTE => "route",
        RTM_GETRULE => "rule",
        other => message_name(other).unwrap_or("unknown"),
    }
}

/// How a socket is opened.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Legacy multicast group bits to `bind` (`RTMGRP_*`); 0 for none.
    pub groups: u32,
    /// Groups joined by number (`RTNLGRP_*` without a legacy bit).
    pub join: Vec<u32>,
    /// `SO_RCVBUF`; the kernel's default when `None`.
    pub rcvbuf: Option<usize>,
    /// `SO_RCVTIMEO`: a receive returns empty-handed after this long.
    pub poll: Duration,
    /// A dump or a request gives up once the kernel has sent nothing for this long.
    pub quiet: Duration,
    /// An eBPF socket filter program to attach (`SO_ATTACH_BPF`; the socket keeps its own
    /// reference).
    pub filter: Option<RawFd>,
}

/// A NETLINK_ROUTE socket and the sequence numbers of its requests.
pub struct RouteSocket {
    socket: Socket,
    seq: AtomicU32,
    quiet: Duration,
    /// Notifications were dropped (ENOBUFS) while a dump was read on this socket: the dump
    /// itself is complete, but what changed after it passed an entry may be lost.
    lost_during_dump: AtomicBool,
}

impl RouteSocket {
    /// A socket in the calling thread's namespace.
    pub fn open(options: &Options) -> Result<Self, SocketError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(SocketError::Io)?;
        socket
            .bind(&SocketAddr::new(0, options.groups))
            .map_err(SocketError::Io)?;
        if let Some(size) = options.rcvbuf {
            socket.set_rx_buf_sz(size).map_err(SocketError::Io)?;
        }
        for group in &options.join {
            socket.add_membership(*group).map_err(SocketError::Io)?;
        }
        set_timeout(socket.as_raw_fd(), options.poll).map_err(SocketError::Io)?;
        if let Some(program) = options.filter {
            let program: libc::c_int = program;
            set_socket_option(socket.as_raw_fd(), libc::SO_ATTACH_BPF, &program)
                .map_err(SocketError::Filter)?;
        }
        Ok(Self {
            socket,
            seq: AtomicU32::new(1),
            quiet: options.quiet,
            lost_during_dump: AtomicBool::new(false),
        })
    }

    /// One socket for each of `options`, all inside the namespace of the nsfs file `path`
    /// (opened on one short-lived thread that entered it).
    pub fn open_in<const N: usize>(
        path: &Path,
        options: [Options; N],
    ) -> Result<[Self; N], SocketError> {
        netns::run_in(path, move || {
            let mut sockets = Vec::with_capacity(N);
            for o in &options {
                sockets.push(Self::open(o)?);
            }
            Ok(sockets
                .try_into()
                .unwrap_or_else(|_| unreachable!("one socket per option")))
        })
    }

    fn next_seq(&self) -> u32 {
        self.seq.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }

    /// Sends a dump request of `request_type` with `body` (the fixed header that selects what
    /// to dump) and hands each reply message to `each` until the dump is done.
    pub fn dump(
        &self,
        request_type: u16,
        body: &[u8],
        mut each: impl FnMut(&Message<'_>),
    ) -> Result<(), SocketError> {
        let seq = self.next_seq();
        let req = message::request(request_type, NLM_F_REQUEST | NLM_F_DUMP, seq, body);
        self.socket.send(&req, 0).map_err(SocketError::Io)?;
        let mut buf = Vec::with_capacity(RECV_BUF);
        let mut heard = Instant::now();
        loop {
            let n = match self.recv(&mut buf) {
                Ok(Some(n)) => n,
                // Multicast notifications were dropped; the dump's own replies never are (the
                // kernel paces them by our reads): read on, and let the caller dump again.
                Err(SocketError::Overflow) => {
                    self.lost_during_dump.store(true, Ordering::Relaxed);
                    continue;
                }
                // The receive timed out: the kernel is slow (or never answers), not gone.
                Ok(None) => {
                    if heard.elapsed() >= self.quiet {
                        return Err(SocketError::Timeout(self.quiet));
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            heard = Instant::now();
            for m in messages(&buf[..n]).map_while(Result::ok) {
                if m.header.seq != seq {
                    continue; // a notification that raced the dump: the dump covers it
                }
                match m.header.msg_type {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        return Err(SocketError::Refused {
                            request: request_type,
                            errno: message::error_code(m.body).unwrap_or(0),
                        })
                    }
                    _ => each(&m),
                }
            }
        }
    }

    /// Sends `body` as a request of `msg_type` with `flags` (`NLM_F_REQUEST | NLM_F_ACK` added)
    /// and waits for the kernel's answer: `Ok(Ok(()))` when it acked, `Ok(Err(errno))` when it
    /// refused.
    pub fn request(
        &self,
        msg_type: u16,
        flags: u16,
        body: &[u8],
    ) -> Result<Result<(), i32>, SocketError> {
        let seq = self.next_seq();
        let msg = message::request(msg_type, NLM_F_REQUEST | NLM_F_ACK | flags, seq, body);
        self.socket.send(&msg, 0).map_err(SocketError::Io)?;
        let mut buf = Vec::with_capacity(8 << 10);
        let mut heard = Instant::now();
        loop {
            let n = match self.recv(&mut buf)? {
                Some(n) => n,
                None if heard.elapsed() >= self.quiet => {
                    return Err(SocketError::Timeout(self.quiet))
                }
                None => continue,
            };
            heard = Instant::now();
            if let Some(errno) = ack_errno(&buf[..n], seq) {
                return Ok(if errno == 0 { Ok(()) } else { Err(errno) });
            }
        }
    }

    /// One receive into `buf` (cleared first; its capacity is what can be read): the bytes
    /// read, or `None` when the receive timed out. [`SocketError::Overflow`] when the kernel
    /// dropped notifications for want of room.
    pub fn recv(&self, buf: &mut Vec<u8>) -> Result<Option<usize>, SocketError> {
        buf.clear();
        match self.socket.recv(buf, 0) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Err(SocketError::Overflow),
            Err(e) => Err(SocketError::Io(e)),
        }
    }

    /// Whether notifications were lost while a dump was read since the last call.
    pub fn take_lost_during_dump(&self) -> bool {
        self.lost_during_dump.swap(false, Ordering::Relaxed)
    }
}

/// The positive errno of the NLMSG_ERROR for `seq` in `buf` (0 for an ack), if there is one.
fn ack_errno(buf: &[u8], seq: u32) -> Option<i32> {
    messages(buf)
        .map_while(Result::ok)
        .filter(|m| m.header.msg_type == NLMSG_ERROR && m.header.seq == seq)
        .find_map(|m| message::error_code(m.body))
}

/// `SO_RCVTIMEO`: a blocking receive on `fd` gives up (EAGAIN) after `timeout`.
fn set_timeout(fd: RawFd, timeout: Duration) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_errno_finds_our_sequence_number() {
        let msg = |seq: u32, err: i32| {
            let mut body = err.to_ne_bytes().to_vec();
            body.extend_from_slice(&[0; 16]);
            message::request(NLMSG_ERROR, 0, seq, &body)
        };
        let mut both = msg(6, 0);
        both.extend(msg(7, -libc::EEXIST));
        assert_eq!(ack_errno(&both, 7), Some(libc::EEXIST));
        assert_eq!(ack_errno(&both, 6), Some(0));
        assert_eq!(ack_errno(&both, 8), None);
    }
}
