//! Requests leaving a process on a send syscall: copy, keep only removals, hand to userspace.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    cty::c_void,
    helpers::{bpf_get_current_task, bpf_ktime_get_ns, generated as gen},
};
use aya_log_ebpf::macro_support::Level;
use routeguard_common::{
    counter, kind, request_flags, syscall, RecordHeader, RequestRecord, PAYLOAD_HALF,
    PAYLOAD_OFFSET, WIRE_VERSION,
};

use super::{
    budget,
    kern::{bound, config_field, read, read_user},
    maps::{count, counted, AWAITING_REPLY, EVENTS, REQUEST_SCRATCH, SELF_TGID},
    rare::{self, rare, site, EVERY_NS},
    sock::{self, Sock},
    task,
};

pub const NLMSG_HDRLEN: u32 = 16;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_REPLACE: u16 = 0x100;
const IFF_UP: u32 = 0x1;

pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_NEWRULE: u16 = 32;
pub const RTM_DELRULE: u16 = 33;
pub const RTM_DELNEXTHOP: u16 = 105;

/// Netlink messages looked at per syscall; iproute2's flush batches ~30 per send.
const MAX_MESSAGES: u32 = 128;
/// iovecs copied per message header; clients put whole netlink messages in one iovec.
const MAX_IOVECS: u64 = 4;
/// Messages looked at per sendmmsg.
const MAX_MMSGS: u64 = 4;

/// Where the bytes of a send are.
#[derive(Clone, Copy)]
pub enum Source {
    /// `struct user_msghdr *`
    Msghdr(u64),
    /// A plain buffer and its length (sendto, write).
    Buf(u64, u64),
    /// `struct mmsghdr *` and the count.
    Mmsg(u64, u64),
    /// `struct iovec *` and the count (writev).
    Iov(u64, u64),
}

/// Could the request types a removal is made of be in this message?
#[inline(always)]
pub fn is_removal_type(msg_type: u16) -> bool {
    matches!(
        msg_type,
        RTM_DELLINK
            | RTM_DELADDR
            | RTM_DELROUTE
            | RTM_DELRULE
            | RTM_DELNEXTHOP
            | RTM_NEWLINK
            | RTM_NEWROUTE
            | RTM_NEWRULE
    )
}

/// The message type of a user buffer's first netlink header, when it is a request
/// (NLM_F_REQUEST) that fits in the buffer.
#[inline(always)]
fn first_request(buf: u64, len: u64) -> Option<u16> {
    if len < u64::from(NLMSG_HDRLEN) {
        return None;
    }
    // struct nlmsghdr { u32 len; u16 type; u16 flags; … } read as four u16 (UAPI).
    let hdr = read_user::<[u16; 4]>(buf)?;
    let msg_len = u64::from(hdr[0]) | (u64::from(hdr[1]) << 16);
    (msg_len >= u64::from(NLMSG_HDRLEN) && msg_len <= len && hdr[3] & NLM_F_REQUEST != 0)
        .then_some(hdr[2])
}

/// Captures the send if it carries at least one removal on a NETLINK_ROUTE socket.
#[inline(always)]
pub fn capture(fd: i64, via: u16, source: Source) -> Option<()> {
    let (task_ptr, sock) = rtnetlink(fd, via, source)?;
    copy(task_ptr, &sock, via, source)
}

/// The current task and the send's socket, when that is a NETLINK_ROUTE socket.
#[inline(always)]
fn rtnetlink(fd: i64, via: u16, source: Source) -> Option<(u64, Sock)> {
    if let Source::Buf(buf, len) = source {
        // `write` is the hottest syscall there is: look at the bytes before walking the fd table.
        if via == syscall::WRITE && !looks_like_request(buf, len) {
            return None;
        }
    }
    if let Source::Iov(iov, iovcnt) = source {
        // `writev` is hot too (logging, pipes): a look at the netlink header in the first
        // iovec, which need not hold the whole message. A first iovec shorter than a header
        // (one split on purpose, say) is not judged here: the socket decides.
        if iovcnt == 0 {
            return None;
        }
        let [base, len] = read_user::<[u64; 2]>(iov)?;
        if len >= u64::from(NLMSG_HDRLEN) {
            // struct nlmsghdr { u32 len; u16 type; u16 flags; … } read as four u16 (UAPI).
            let hdr = read_user::<[u16; 4]>(base)?;
            if hdr[3] & NLM_F_REQUEST == 0 || !is_removal_type(hdr[2]) {
                return None;
            }
        }
    }
    // SAFETY: helper without preconditions.
    let task_ptr = unsafe { bpf_get_current_task() };
    let sock = sock::lookup(task_ptr, fd)?;
    sock.is_rtnetlink().then_some((task_ptr, sock))
}

/// Copies the send and writes it to the ring if it carries at least one removal.
#[inline(always)]
fn copy(task_ptr: u64, sock: &Sock, via: u16, source: Source) -> Option<()> {
    let rec = REQUEST_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch owned by this program invocation.
    let rec: &mut RequestRecord = unsafe { &mut *rec };
    rec.head.flags = 0;
    // Faults are told from this CPU's counter (the program does not nest on a CPU), read only
    // when the line could be logged: a count kept in a register would multiply the verifier's
    // states across the copy loops.
    let faulted_before = if rare::on(Level::Debug) {
        counted(counter::READ_FAILED)
    } else {
        0
    };
    let total = match source {
        Source::Buf(buf, len) => copy_chunk(rec, 0, buf, len),
        Source::Msghdr(msg) => copy_msghdr(rec, 0, msg),
        Source::Mmsg(mmsg, vlen) => copy_mmsg(rec, mmsg, vlen),
        Source::Iov(iov, iovcnt) => copy_iov(rec, 0, iov, iovcnt),
    };
    let removal = contains_removal(rec, total);
    // Budgets come after the copy: only a removal is budgeted, and only the copy tells.
    let sent = if removal && budget::admit(task_ptr, sock, total as u64) {
        emit(rec, task_ptr, sock, via, total)
    } else {
        None
    };
    // Any sender can make a send longer than the copy limit, or hand over memory that reads as
    // a fault (bpf_probe_read_user cannot fault pages in: a buffer not touched yet, or swapped
    // out, fails here while the syscall itself succeeds), privileged or not. So: one line for
    // both, rate-limited; TRUNCATED and READ_FAILED count every one whatever the level.
    //
    // The line comes last, once nothing the verifier must keep exact is live (`total` bounded
    // the copies and the record; here it is only printed): the many paths through the copy
    // loops reach it as a few states. Logged before `emit`, it was verified once per path:
    // 350k instructions for sys_enter on 6.18 with logging on, over the 1M limit on 6.1. For
    // the same reason the flags are numbers, not a choice between two strings.
    let truncated = rec.head.flags & request_flags::TRUNCATED;
    rare!(
        Debug,
        if truncated != 0 || counted(counter::READ_FAILED) != faulted_before,
        site::SEND_INCOMPLETE,
        EVERY_NS,
        "pid {}: a send on a route netlink socket was not copied whole: {} bytes copied (sendto/write buffer: {} bytes); cut at the copy limit: {}; reads that faulted: {}; removal in what was copied: {} (0: the send is not reported)",
        rare::pid(),
        total,
        match source {
            Source::Buf(_, len) => len,
            Source::Msghdr(_) | Source::Mmsg(..) | Source::Iov(..) => 0,
        },
        u32::from(truncated != 0),
        counted(counter::READ_FAILED).wrapping_sub(faulted_before),
        u32::from(removal)
    );
    sent
}

/// Writes the request (after the task's details when userspace lacks them).
#[inline(always)]
pub fn emit(
    rec: &mut RequestRecord,
    task_ptr: u64,
    sock: &Sock,
    via: u16,
    total: usize,
) -> Option<()> {
    task::current_info(&mut rec.head.task);
    task::announce(task_ptr, &rec.head.task);
    let len = PAYLOAD_OFFSET + total;
    if len > core::mem::size_of::<RequestRecord>() {
        return None;
    }
    rec.head.header = RecordHeader {
        kind: kind::REQUEST,
        version: WIRE_VERSION,
        len: len as u32,
    };
    // SAFETY: helper without preconditions.
    rec.head.ts_ns = unsafe { bpf_ktime_get_ns() };
    rec.head.sock = sock.sk;
    rec.head.netns_ino = sock.netns_ino;
    rec.head.syscall = via;
    rec.head.sock_family = sock.family;
    rec.head.sock_protocol = sock.protocol;
    rec.head.payload_len = total as u32;
    // `struct netlink_sock` starts with its `struct sock`: the port id is at an offset from it.
    rec.head.portid = if sock.family == sock::AF_NETLINK {
        let offset = config_field!(offsets.netlink_sock_portid);
        if rare::offset_known(
            offset,
            site::OFFSET_NETLINK_SOCK_PORTID,
            "netlink_sock.portid",
            "requests carry no port id, so deletion notifications cannot name their sender",
        ) {
            read::<u32>(sock.sk, offset).unwrap_or(0)
        } else {
            0
        }
    } else {
        0
    };
    rec.head._pad = 0;
    if SELF_TGID.get(0).is_some_and(|me| *me == rec.head.task.pid) {
        rec.head.flags |= request_flags::SELF;
    }
    // SAFETY: `len` bytes of the scratch record are initialised (header + `total` of payload).
    let bytes =
        unsafe { core::slice::from_raw_parts(rec as *const RequestRecord as *const u8, len) };
    if EVENTS
        .output::<[u8]>(bytes, wake_flags(len as u64))
        .is_err()
    {
        count(counter::RINGBUF_FULL);
        return None;
    }
    // The syscall path's recvmsg programs look for the reply of a process that sent a request;
    // requests heard in the kernel get their result from the request hook's exit instead.
    if sock.family == sock::AF_NETLINK && rec.head.flags & request_flags::IN_KERNEL == 0 {
        // SAFETY: helper without preconditions.
        let now = unsafe { bpf_ktime_get_ns() };
        match AWAITING_REPLY.get_ptr_mut(rec.head.task.pid) {
            // SAFETY: a live map value; a racing writer would only store another timestamp.
            Some(since) => unsafe { *since = now },
            None => {
                let _ = AWAITING_REPLY.insert(rec.head.task.pid, now, 0);
            }
        }
    }
    Some(())
}

/// Batched wake-ups: userspace is woken when the data waiting crosses the threshold, not for
/// every record past it (each forced wake-up is an irq_work; a consumer that lags would make
/// every record pay one). Userspace also drains on a short timer. A threshold of 0 wakes it for
/// every record.
#[inline(always)]
pub fn wake_flags(len: u64) -> u64 {
    let threshold = u64::from(config_field!(wakeup_bytes));
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    if threshold == 0 || (waiting < threshold && waiting + len >= threshold) {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// A cheap look at the first header of a `write` buffer: a netlink request of a type we want?
#[inline(always)]
fn looks_like_request(buf: u64, len: u64) -> bool {
    first_request(buf, len).is_some_and(is_removal_type)
}

/// Copies one user chunk to `payload[off..]`; returns the new end. Each chunk is capped at half
/// the payload and starts in the first half, which bounds every access for the verifier.
#[inline(always)]
fn copy_chunk(rec: &mut RequestRecord, off: usize, src: u64, len: u64) -> usize {
    if len == 0 {
        return off;
    }
    if off >= PAYLOAD_HALF {
        rec.head.flags |= request_flags::TRUNCATED;
        count(counter::TRUNCATED);
        return off;
    }
    let mut n = len as usize;
    if n > PAYLOAD_HALF - 1 {
        n = PAYLOAD_HALF - 1;
        rec.head.flags |= request_flags::TRUNCATED;
        count(counter::TRUNCATED);
    }
    // Masks the verifier sees at the call (see `kern::bound`).
    let n = bound(n as u64, (PAYLOAD_HALF - 1) as u64) as usize;
    let off = bound(off as u64, (PAYLOAD_HALF - 1) as u64) as usize;
    // SAFETY: off < HALF and n < HALF, so the write stays inside the 2 × HALF payload.
    let dst = unsafe { rec.payload.as_mut_ptr().add(off) } as *mut c_void;
    // SAFETY: bpf_probe_read_user handles faults; dst is bounded as above.
    let ret = unsafe { gen::bpf_probe_read_user(dst, n as u32, src as *const c_void) };
    if ret != 0 {
        count(counter::READ_FAILED);
        return off;
    }
    off + n
}

#[inline(always)]
fn copy_msghdr(rec: &mut RequestRecord, off: usize, msg: u64) -> usize {
    // struct user_msghdr: msg_iov at 16, msg_iovlen at 24 (UAPI, 64-bit); one read for both.
    let Some([iov, iovlen]) = read_user::<[u64; 2]>(msg + 16) else {
        count(counter::READ_FAILED);
        return off;
    };
    copy_iov(rec, off, iov, iovlen)
}

/// Copies the chunks of an iovec array (a msghdr's, or writev's) to `payload[off..]`.
#[inline(always)]
fn copy_iov(rec: &mut RequestRecord, mut off: usize, iov: u64, iovlen: u64) -> usize {
    let mut i = 0;
    while i < MAX_IOVECS && i < iovlen {
        // struct iovec { void *iov_base; size_t iov_len; }
        match read_user::<[u64; 2]>(iov + i * 16) {
            Some([base, len]) => off = copy_chunk(rec, off, base, len),
            None => count(counter::READ_FAILED),
        }
        i += 1;
    }
    if iovlen > MAX_IOVECS {
        rec.head.flags |= request_flags::TRUNCATED;
        count(counter::TRUNCATED);
    }
    off
}

#[inline(always)]
fn copy_mmsg(rec: &mut RequestRecord, mmsg: u64, vlen: u64) -> usize {
    let mut off = 0;
    let mut j = 0;
    // struct mmsghdr { struct user_msghdr msg_hdr; unsigned int msg_len; } is 64 bytes.
    while j < MAX_MMSGS && j < vlen {
        off = copy_msghdr(rec, off, mmsg + j * 64);
        j += 1;
    }
    off
}

/// Walks the netlink headers in the copied payload looking for one removal.
#[inline(always)]
fn contains_removal(rec: &RequestRecord, total: usize) -> bool {
    let base = rec.payload.as_ptr() as u64;
    let total = total as u32;
    let mut pos: u32 = 0;
    let mut i = 0;
    while i < MAX_MESSAGES {
        if pos + NLMSG_HDRLEN > total {
            return false;
        }
        let Some(hdr) = read::<[u16; 4]>(base, pos) else {
            return false;
        };
        let msg_len = u32::from(hdr[0]) | (u32::from(hdr[1]) << 16);
        if msg_len < NLMSG_HDRLEN {
            return false;
        }
        if is_removal(base, pos, hdr[2], hdr[3]) {
            return true;
        }
        pos += (msg_len + 3) & !3;
        i += 1;
    }
    false
}

#[inline(always)]
pub fn is_removal(base: u64, pos: u32, msg_type: u16, flags: u16) -> bool {
    match msg_type {
        RTM_DELLINK | RTM_DELADDR | RTM_DELROUTE | RTM_DELRULE | RTM_DELNEXTHOP => true,
        RTM_NEWROUTE | RTM_NEWRULE => flags & NLM_F_REPLACE != 0,
        RTM_NEWLINK => {
            // struct ifinfomsg after the header: ifi_flags at 8, ifi_change at 12. The kernel
            // treats ifi_change == 0 as "all bits" (rtnl_dev_combine_flags); userspace decides
            // precisely, this only keeps up-requests and no-ops out of the ring.
            let Some([ifi_flags, ifi_change]) = read::<[u32; 2]>(base, pos + NLMSG_HDRLEN + 8)
            else {
                return false;
            };
            ifi_flags & IFF_UP == 0
                && (ifi_change & IFF_UP != 0 || (ifi_change == 0 && ifi_flags != 0))
        }
        _ => false,
    }
}
