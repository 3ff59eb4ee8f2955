//! The kernel's deletion notifications, caught before a socket can drop them.
//!
//! A socket filter (`SO_ATTACH_BPF`) on routeguard's own route listener in each namespace (the
//! syscall path's route mirror). `do_one_broadcast()` runs a listener's filter on every
//! notification for it *before* `netlink_broadcast_deliver()` looks at the receive buffer
//! (net/netlink/af_netlink.c), so nothing copied here is lost to an overflow, however fast a
//! flush deletes. rtnetlink handles a request inside the sender's `sendmsg`, so a notification
//! that names a requester (`nlmsg_pid` non-zero) is made in the requesting thread: `current` is
//! that thread, and the record names it for userspace to join with the request it captured.
//!
//! Route deletions a request made are copied and dropped (the mirror is told about them by
//! userspace, in order with the requests): a burst of them never wakes the listener. On the
//! kernel-function path (`notify_routes` 0), whose records report every route removal, every
//! route deletion is dropped uncopied. Rule deletions a request made are copied and kept (the
//! mirror keeps its rules from them). Everything else — additions, replaces, and on the syscall
//! path what the kernel removes on its own (`nlmsg_pid` 0: IPv6 expiry, link-down) — passes
//! untouched.

use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_get_current_task, bpf_ktime_get_ns, generated as gen},
    macros::socket_filter,
    programs::SkBuffContext,
    EbpfContext as _,
};
use routeguard_common::{
    counter, kind, NotifyRecord, RecordHeader, NOTIFY_MSG_MAX, NOTIFY_MSG_OFFSET, WIRE_VERSION,
};

use super::{
    kern::{bound, config_field, floor_arm, read},
    maps::{count, EVENTS, NOTIFY_SCRATCH},
    rare::{rare, site, EVERY_NS},
    send::{wake_flags, RTM_DELROUTE, RTM_DELRULE},
};

/// Bounds a record's length for the verifier (see `kern::bound`).
const LEN_MASK: u64 = (core::mem::size_of::<NotifyRecord>().next_power_of_two() - 1) as u64;

/// What a socket filter returns: how many bytes of the message the socket keeps.
const KEEP: i64 = u32::MAX as i64;
const DROP: i64 = 0;

// A socket filter: `sk_filter(sk, skb)` from do_one_broadcast() for each netlink notification
// bound for the socket. Checked on 6.1, 6.12 (QEMU guests) and 6.18.
#[socket_filter]
pub fn notify(ctx: SkBuffContext) -> i64 {
    if floor_arm() {
        return DROP;
    }
    try_notify(&ctx).unwrap_or(KEEP)
}

#[inline(always)]
fn try_notify(ctx: &SkBuffContext) -> Option<i64> {
    // struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; } (UAPI): one message
    // per notification skb (rtnl_notify).
    let hdr: [u32; 4] = ctx.load(0).ok()?;
    let msg_type = hdr[1] as u16;
    let requested = hdr[3] != 0;
    match msg_type {
        RTM_DELROUTE if config_field!(notify_routes) == 0 => Some(DROP),
        RTM_DELROUTE if requested => {
            copy(ctx, hdr[0]);
            Some(DROP)
        }
        RTM_DELRULE if requested => {
            copy(ctx, hdr[0]);
            Some(KEEP)
        }
        _ => Some(KEEP),
    }
}

/// Writes the notification to the ring, with the requesting thread.
#[inline(always)]
fn copy(ctx: &SkBuffContext, msg_len: u32) {
    let Some(rec) = NOTIFY_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU scratch owned by this program invocation.
    let rec: &mut NotifyRecord = unsafe { &mut *rec };
    let skb_len = ctx.len();
    let full = if msg_len < skb_len { msg_len } else { skb_len };
    if full < 16 {
        return;
    }
    // 1..=NOTIFY_MSG_MAX, in the register the helper receives (see `kern::bound`).
    let n = if full as usize > NOTIFY_MSG_MAX {
        NOTIFY_MSG_MAX as u64
    } else {
        u64::from(full)
    };
    let n = bound(n - 1, (NOTIFY_MSG_MAX - 1) as u64) + 1;
    // SAFETY: n ≤ NOTIFY_MSG_MAX, the size of `msg`; the helper checks the skb's bounds.
    let loaded = unsafe {
        gen::bpf_skb_load_bytes(
            ctx.as_ptr(),
            0,
            rec.msg.as_mut_ptr() as *mut c_void,
            n as u32,
        )
    };
    if loaded != 0 {
        count(counter::READ_FAILED);
        // Should not happen: `n` is within the skb's length. Should it, it would happen for
        // every notification: rate-limited.
        rare!(
            Warn,
            site::NOTIFY_UNREADABLE,
            EVERY_NS,
            "loading {} of the {} bytes of a deletion notification from its skb failed ({}); it is not recorded",
            n,
            full,
            loaded
        );
        return;
    }
    // SAFETY: helper without preconditions (a socket filter may call it with CAP_PERFMON).
    let task = unsafe { bpf_get_current_task() };
    rec.pid = read::<u32>(task, config_field!(offsets.task_tgid)).unwrap_or(0);
    rec.tid = read::<u32>(task, config_field!(offsets.task_pid)).unwrap_or(0);
    let nsproxy = read::<u64>(task, config_field!(offsets.task_nsproxy)).unwrap_or(0);
    let net = read::<u64>(nsproxy, config_field!(offsets.nsproxy_net_ns)).unwrap_or(0);
    rec.netns_ino = read::<u32>(net, config_field!(offsets.net_ns_inum)).unwrap_or(0);
    rec.msg_len = n as u32;
    rec.full_len = full;
    rec._pad = 0;
    let len = NOTIFY_MSG_OFFSET as u64 + n;
    rec.header = RecordHeader {
        kind: kind::NOTIFY,
        version: WIRE_VERSION,
        len: len as u32,
    };
    // SAFETY: helper without preconditions.
    rec.ts_ns = unsafe { bpf_ktime_get_ns() };
    // A mask of all ones below a power of two keeps every length up to the record's size as it
    // is (`size * 2 - 1` would not: 1064 * 2 - 1 clears bits of 100).
    let len = bound(len, LEN_MASK) as usize;
    if len > core::mem::size_of::<NotifyRecord>() {
        return;
    }
    // SAFETY: the first `len` bytes of the scratch record are written above.
    let bytes =
        unsafe { core::slice::from_raw_parts(rec as *const NotifyRecord as *const u8, len) };
    if EVENTS
        .output::<[u8]>(bytes, wake_flags(len as u64))
        .is_err()
    {
        count(counter::NOTIFY_LOST);
    }
}
