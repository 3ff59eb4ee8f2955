//! Requests as the kernel receives them, in the sender's context: on the kernel-function path
//! these replace the syscall programs, which would otherwise run on every syscall of the
//! machine (measured on 6.18: +300 ns on each `getppid`) to find the few that carry a request.
//!
//! `rtnetlink_rcv_msg` sees each rtnetlink message once, already copied into the kernel, with
//! its sender's socket; its exit has the result the sender's ack will carry. `sock_ioctl` does
//! the same for net-tools' ioctls. A message that is exactly one route, rule or nexthop removal
//! is not copied: the deletion function reports it with its header (`record::send` notes it
//! here), and the exit copies it only if none did (the kernel refused it before reaching one).

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_current_task_btf,
        bpf_probe_read_kernel_buf, bpf_task_pt_regs,
    },
    macros::{fentry, fexit, map},
    maps::LruHashMap,
    programs::{FEntryContext, FExitContext},
};
use routeguard_common::{
    context, counter, request_flags, syscall, KernelRecord, RequestRecord, PAYLOAD_HALF,
};

use super::{kconfig_field, record::netns_ino};
use crate::programs::{
    budget, ioctl,
    kern::{bound, config_field, load, read},
    maps::{count, REQUEST_SCRATCH},
    rare::{self, rare, site, EVERY_NS},
    recv,
    send::{self, RTM_DELNEXTHOP, RTM_DELROUTE, RTM_DELRULE},
    sock::{self, Sock},
    Regs,
};

/// tid → the rtnetlink request that thread is inside (`active`), from `rtnetlink_rcv_msg`'s
/// entry to its exit (rtnetlink does not nest on a thread). A thread's entry stays and is
/// rewritten in place: inserting and deleting one per message cost more than the programs'
/// own work (measured in the 6.12 VM: `htab_map_update_elem` + `htab_map_delete_elem` 1.3 %
/// of `ip`'s samples against 0.85 % for the alias program). LRU, so threads that are gone
/// make room.
#[map]
pub static INFLIGHT: LruHashMap<u32, Inflight> = LruHashMap::with_max_entries(8192, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Inflight {
    /// The sender's `struct sock *`, for a request copied at the entry (its exit pairs the
    /// result with it in userspace); 0 for one left to the deletion functions.
    pub sock: u64,
    /// The sender's netlink port.
    pub portid: u32,
    /// The netlink message type.
    pub msg_type: u16,
    /// Non-zero for a removal left to the deletion functions (not copied at entry).
    pub deferred: u16,
    /// The header's flags and sequence number, for the record that claims the request.
    pub nlmsg_flags: u16,
    /// Every byte of a map value is written (no implicit padding).
    pub _pad: u16,
    /// Kernel-function records of this request so far.
    pub reported: u32,
    pub seq: u32,
    /// Non-zero from the entry to the exit.
    pub active: u32,
}

/// `struct nlmsghdr` (UAPI): len, type, flags, seq, pid.
mod nlh {
    pub const LEN: u32 = 0;
    pub const TYPE: u32 = 4;
    pub const FLAGS: u32 = 6;
    pub const SEQ: u32 = 8;
}

// static int rtnetlink_rcv_msg(struct sk_buff *skb, struct nlmsghdr *nlh,
//                              struct netlink_ext_ack *extack) — 6.1 … 6.18.
#[fentry(function = "rtnetlink_rcv_msg")]
pub fn rtnetlink_rcv_msg_entry(ctx: FEntryContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    let _ = try_entry(&ctx);
    0
}

#[inline(always)]
fn try_entry(ctx: &FEntryContext) -> Option<()> {
    // Typed arguments: the header's fields are plain loads.
    let skb: u64 = ctx.arg(0);
    let nlh: u64 = ctx.arg(1);
    let msg_type = load::<u16>(nlh, nlh::TYPE)?;
    let flags = load::<u16>(nlh, nlh::FLAGS)?;
    let deferred = matches!(msg_type, RTM_DELROUTE | RTM_DELRULE | RTM_DELNEXTHOP);
    if !deferred && !send::is_removal(nlh, 0, msg_type, flags) {
        return None;
    }
    let mut noted = Inflight {
        sock: 0,
        portid: portid(skb),
        msg_type,
        deferred: u16::from(deferred),
        nlmsg_flags: flags,
        _pad: 0,
        reported: 0,
        seq: load::<u32>(nlh, nlh::SEQ)?,
        active: 1,
    };
    // A deferred removal is usually reported by its deletion function, which finds the
    // syscall itself; the sender's socket is needed only if none does (the exit finds it).
    if !deferred {
        let sock = sender(skb)?;
        noted.sock = sock.sk;
        copy(nlh, load::<u32>(nlh, nlh::LEN)?, &sock, via())?;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    match INFLIGHT.get_ptr_mut(&tid) {
        // SAFETY: this thread's own entry; no other thread writes it.
        Some(slot) => unsafe { *slot = noted },
        None => INFLIGHT.insert(&tid, &noted, 0).ok()?,
    }
    Some(())
}

// Exit: the request's result, as its ack will say (and the request itself, if it was left to
// the deletion functions and none of them reported it).
#[fexit(function = "rtnetlink_rcv_msg")]
pub fn rtnetlink_rcv_msg_exit(ctx: FExitContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    let _ = try_exit(&ctx);
    0
}

#[inline(always)]
fn try_exit(ctx: &FExitContext) -> Option<()> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let slot = INFLIGHT.get_ptr_mut(&tid)?;
    // SAFETY: this thread's own entry; it is copied out, then marked finished.
    let noted = unsafe { *slot };
    if noted.active == 0 {
        return None;
    }
    // SAFETY: as above.
    unsafe { (*slot).active = 0 };
    if noted.deferred != 0 && noted.reported != 0 {
        return Some(());
    }
    let skb: u64 = ctx.arg(0);
    let nlh: u64 = ctx.arg(1);
    let ret: i64 = ctx.arg(3);
    let sock = if noted.deferred != 0 {
        // None of the deletion functions reported it: the request as sent, with its result.
        let sock = sender(skb)?;
        copy(nlh, load::<u32>(nlh, nlh::LEN)?, &sock, via())?;
        sock.sk
    } else {
        noted.sock
    };
    recv::report(
        sock,
        bpf_get_current_pid_tgid(),
        noted.seq,
        ret as i32,
        noted.msg_type,
    );
    Some(())
}

/// This thread's request left to the deletion functions, if it is inside one that `fits`:
/// counted as reported by the record being built, so the exit need not copy it.
#[inline(always)]
fn claim_note(tid: u32, fits: impl Fn(&Inflight) -> bool) -> Option<&'static mut Inflight> {
    let noted = INFLIGHT.get_ptr_mut(&tid)?;
    // SAFETY: a live map value of this thread, which is inside that request.
    let noted = unsafe { &mut *noted };
    if noted.active == 0 || noted.deferred == 0 || !fits(noted) {
        return None;
    }
    noted.reported += 1;
    Some(noted)
}

/// A record of this thread's request (same netlink message type) is being sent: the exit need
/// not copy it, and the record takes the request's syscall. Returns that syscall.
#[inline(always)]
pub fn claim(tid: u32) -> Option<u16> {
    claim_note(tid, |_| true).map(|_| via())
}

/// An IPv4 route removed while this thread is inside a route delete it sent is that request's
/// object: the record takes the request's header, port and syscall, and claims it (one map
/// lookup). Routes a nexthop delete takes with it are not: false, nothing taken.
#[inline(always)]
pub fn claim_route_delete(rec: &mut KernelRecord) -> bool {
    let Some(noted) = claim_note(rec.task.tid, |n| n.msg_type == RTM_DELROUTE) else {
        return false;
    };
    rec.msg_type = noted.msg_type;
    rec.nlmsg_flags = noted.nlmsg_flags;
    rec.seq = noted.seq;
    rec.portid = noted.portid;
    rec.context |= context::HAS_NLH;
    rec.syscall = via();
    true
}

// static long sock_ioctl(struct file *file, unsigned cmd, unsigned long arg) — every socket
// ioctl; 6.1 … 6.18.
#[fentry(function = "sock_ioctl")]
pub fn sock_ioctl_entry(ctx: FEntryContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    let file: u64 = ctx.arg(0);
    let cmd: u64 = ctx.arg(1);
    let arg: u64 = ctx.arg(2);
    let _ = ioctl::enter_file(file, cmd as u32, arg);
    0
}

#[fexit(function = "sock_ioctl")]
pub fn sock_ioctl_exit(ctx: FExitContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    let ret: i64 = ctx.arg(3);
    let _ = ioctl::exit(ret);
    0
}

/// The socket the message was sent from (`NETLINK_CB(skb).sk`), in its namespace.
#[inline(always)]
fn sender(skb: u64) -> Option<Sock> {
    let cb = kconfig_field!(offsets.skb_cb);
    let sk = kconfig_field!(offsets.nlcb_sk);
    if cb == routeguard_common::OFFSET_MISSING || sk == routeguard_common::OFFSET_MISSING {
        return None;
    }
    let sk = read::<u64>(skb, cb + sk)?;
    let net = read::<u64>(sk, kconfig_field!(offsets.sock_net)).unwrap_or(0);
    Some(Sock {
        sk,
        family: sock::AF_NETLINK,
        protocol: sock::NETLINK_ROUTE,
        netns_ino: netns_ino(net),
        net,
    })
}

/// `NETLINK_CB(skb).portid`: the sender's port (0 when the offset is unknown).
#[inline(always)]
pub fn portid(skb: u64) -> u32 {
    let cb = kconfig_field!(offsets.skb_cb);
    let portid = kconfig_field!(offsets.nlcb_portid);
    // skb_cb is checked by the loader (no request hook is attached without it).
    if cb == routeguard_common::OFFSET_MISSING
        || !rare::offset_known(
            portid,
            site::OFFSET_NLCB_PORTID,
            "netlink_skb_parms.portid",
            "requests carry no port id, so deletion notifications cannot name their sender",
        )
    {
        return 0;
    }
    read::<u32>(skb, cb + portid).unwrap_or(0)
}

/// Which syscall the current task is in, from its saved user registers.
#[inline(always)]
pub(crate) fn via() -> u16 {
    // SAFETY: helpers without preconditions; the registers are read with fault handling.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64;
    let Some(regs) = Regs::read(regs) else {
        return 0;
    };
    if !regs.native() {
        return 0;
    }
    match regs.syscall_nr() {
        Some(nr) if nr == config_field!(syscalls.sendmsg) => syscall::SENDMSG,
        Some(nr) if nr == config_field!(syscalls.sendto) => syscall::SENDTO,
        Some(nr) if nr == config_field!(syscalls.sendmmsg) => syscall::SENDMMSG,
        Some(nr) if nr == config_field!(syscalls.write) => syscall::WRITE,
        Some(nr) if nr == config_field!(syscalls.writev) => syscall::WRITEV,
        _ => 0,
    }
}

/// Copies the one message (up to half the payload) and sends it as a request record.
#[inline(always)]
fn copy(nlh: u64, len: u32, sock: &Sock, via: u16) -> Option<()> {
    let rec = REQUEST_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch owned by this program invocation.
    let rec: &mut RequestRecord = unsafe { &mut *rec };
    rec.head.flags = request_flags::IN_KERNEL;
    let mut n = len as usize;
    if n > PAYLOAD_HALF {
        n = PAYLOAD_HALF;
        rec.head.flags |= request_flags::TRUNCATED;
        count(counter::TRUNCATED);
        // Any sender can send a long message (rtnetlink parses it before it checks
        // privileges): rate-limited, and counted in TRUNCATED.
        rare!(
            Debug,
            site::REQUEST_TRUNCATED,
            EVERY_NS,
            "pid {}: a {} byte rtnetlink request was cut at the copy limit after {} bytes; its attributes past the cut are not decoded",
            rare::pid(),
            len,
            PAYLOAD_HALF
        );
    }
    // A mask the verifier sees at the call (see `kern::bound`).
    let n = bound(n as u64, (PAYLOAD_HALF * 2 - 1) as u64) as usize;
    if n == 0 || n > PAYLOAD_HALF {
        return None;
    }
    // SAFETY: reads kernel memory with fault handling into a buffer of at least `n` bytes.
    if let Err(err) = unsafe { bpf_probe_read_kernel_buf(nlh as *const u8, &mut rec.payload[..n]) }
    {
        count(counter::READ_FAILED);
        // Should not happen: the message is in the skb rtnetlink is parsing. Rate-limited in
        // case it does for every request.
        rare!(
            Warn,
            site::REQUEST_UNREADABLE,
            EVERY_NS,
            "pid {}: reading its {} byte rtnetlink request from kernel memory failed ({}); the request is not reported",
            rare::pid(),
            n,
            err
        );
        return None;
    }
    // SAFETY: helper without preconditions.
    let task_ptr = unsafe { bpf_get_current_task() };
    if !budget::admit(task_ptr, sock, n as u64) {
        return None;
    }
    send::emit(rec, task_ptr, sock, via, n)
}
