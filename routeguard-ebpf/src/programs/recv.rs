//! The kernel's replies: NLMSG_ERROR messages read back by a process we captured a request from.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns};
use routeguard_common::{counter, kind, AckRecord, RecordHeader, WIRE_VERSION};

use super::{
    kern::read_user,
    maps::{count, recv_kind, AWAITING_REPLY, EVENTS},
    send::{is_removal_type, wake_flags},
    sock,
};

const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: u64 = 16;
/// Replies looked at per receive.
const MAX_REPLIES: u32 = 32;
/// A process's receives are inspected this long after its last captured request.
const REPLY_WINDOW_NS: u64 = 10_000_000_000;

/// sys_exit of a receive (`fd`, `ptr`, `len` as passed, `ret` its result): report each
/// NLMSG_ERROR that answers a removal request, if this process awaits one.
#[inline(always)]
pub fn exit(fd: i64, ptr: u64, len: u64, recv: u32, ret: i64) -> Option<()> {
    if ret <= 0 {
        return None;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let since = AWAITING_REPLY.get_ptr(tgid)?;
    // SAFETY: helper without preconditions; the pointer comes from a successful lookup.
    let (now, since) = unsafe { (bpf_ktime_get_ns(), *since) };
    if now.saturating_sub(since) > REPLY_WINDOW_NS {
        let _ = AWAITING_REPLY.remove(tgid);
        return None;
    }
    let (buf, avail) = match recv {
        recv_kind::BUF => (ptr, min(len, ret as u64)),
        recv_kind::MSGHDR => first_iov(ptr, ret as u64)?,
        recv_kind::MMSG => {
            // recvmmsg returns a message count; msg_len (offset 56) holds the first's bytes.
            let got = u64::from(read_user::<u32>(ptr + 56)?);
            first_iov(ptr, got)?
        }
        _ => return None,
    };
    scan_replies(buf, avail, fd, pid_tgid);
    Some(())
}

#[inline(always)]
fn min(a: u64, b: u64) -> u64 {
    if a < b {
        a
    } else {
        b
    }
}

/// The first iovec of a `struct user_msghdr` and how many of the `got` bytes landed in it.
#[inline(always)]
fn first_iov(msg: u64, got: u64) -> Option<(u64, u64)> {
    let iov = read_user::<u64>(msg + 16)?;
    let [base, len] = read_user::<[u64; 2]>(iov)?;
    Some((base, min(len, got)))
}

/// Walks the messages of a receive buffer and reports each NLMSG_ERROR that answers a removal.
/// The bytes are looked at before the fd table: most receives carry no such reply (iproute2
/// first peeks into an empty buffer just to learn the size), and the socket is resolved once,
/// at the first reply, to confirm it is NETLINK_ROUTE and to key the replies.
#[inline(always)]
fn scan_replies(buf: u64, avail: u64, fd: i64, pid_tgid: u64) {
    let mut sk: u64 = 0;
    let mut pos: u64 = 0;
    let mut i = 0;
    while i < MAX_REPLIES {
        if pos + NLMSG_HDRLEN > avail {
            break;
        }
        // struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }
        let Some(hdr) = read_user::<[u32; 4]>(buf + pos) else {
            break;
        };
        let msg_len = u64::from(hdr[0]);
        if msg_len < NLMSG_HDRLEN {
            break;
        }
        if hdr[1] as u16 == NLMSG_ERROR && pos + NLMSG_HDRLEN + 20 <= avail {
            // struct nlmsgerr { int error; struct nlmsghdr msg; }
            let Some(err) = read_user::<[u32; 5]>(buf + pos + NLMSG_HDRLEN) else {
                break;
            };
            let orig_type = err[2] as u16;
            if is_removal_type(orig_type) {
                if sk == 0 {
                    // SAFETY: helper without preconditions.
                    let task_ptr = unsafe { bpf_get_current_task() };
                    match sock::lookup(task_ptr, fd) {
                        Some(s) if s.is_rtnetlink() => sk = s.sk,
                        _ => return,
                    }
                }
                report(sk, pid_tgid, err[3], err[0] as i32, orig_type);
            }
        }
        pos += (msg_len + 3) & !3;
        i += 1;
    }
}

#[inline(always)]
pub fn report(sk: u64, pid_tgid: u64, seq: u32, error: i32, msg_type: u16) {
    let rec = AckRecord {
        header: RecordHeader {
            kind: kind::ACK,
            version: WIRE_VERSION,
            len: core::mem::size_of::<AckRecord>() as u32,
        },
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        sock: sk,
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        seq,
        error,
        msg_type,
        _pad: [0; 6],
    };
    if EVENTS
        .output::<AckRecord>(&rec, wake_flags(size_of::<AckRecord>() as u64))
        .is_err()
    {
        count(counter::ACK_LOST);
    }
}
