//! The kernel's replies, taken in the kernel: each NLMSG_ERROR a captured process receives, read
//! from the skb the kernel copies to it, never from the receiver's memory (issue 17 item 3).
//!
//! At `sys_exit` of a receive, the receiver's `msghdr` and iovec can already point elsewhere:
//! another of its threads may repoint them, while the receive is blocked, at a forged "success".
//! The kernel copied the iovec at the start of the receive and writes the real reply there; the
//! skb it copies from is the reply itself.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};

use super::{
    kern::{config_field, read},
    maps::AWAITING_REPLY,
    recv::{report, REPLY_WINDOW_NS},
    send::is_removal_type,
    sock::{AF_NETLINK, NETLINK_ROUTE},
};

const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: u64 = 16;
/// Replies looked at per copy.
const MAX_REPLIES: u32 = 32;

// raw_tp skb_copy_datagram_iovec: TP_PROTO(const struct sk_buff *skb, int len), traced at the top
// of skb_copy_datagram_iter() in the receiver's context, which netlink_recvmsg() calls with the
// bytes it copies to the receiver (`len`: 0 for iproute2's size-probing peek). Since 2.6.x;
// checked on 6.18.
#[raw_tracepoint(tracepoint = "skb_copy_datagram_iovec")]
pub fn skb_copy_datagram_iovec(ctx: RawTracePointContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    let _ = try_copy(&ctx);
    0
}

#[inline(always)]
fn try_copy(ctx: &RawTracePointContext) -> Option<()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let since = AWAITING_REPLY.get_ptr((pid_tgid >> 32) as u32)?;
    // SAFETY: helper without preconditions; the pointer comes from a successful lookup.
    let (now, since) = unsafe { (bpf_ktime_get_ns(), *since) };
    if now.saturating_sub(since) > REPLY_WINDOW_NS {
        return None;
    }
    let skb: u64 = ctx.arg(0);
    let len: i32 = ctx.arg(1);
    if len < (NLMSG_HDRLEN + 20) as i32 {
        return None;
    }
    let sk = read::<u64>(skb, config_field!(offsets.skb_sk))?;
    if read::<u16>(sk, config_field!(offsets.sock_family))? != AF_NETLINK
        || read::<u16>(sk, config_field!(offsets.sock_protocol))? != NETLINK_ROUTE
    {
        return None;
    }
    let data = read::<u64>(skb, config_field!(offsets.skb_data))?;
    let skb_len = read::<u32>(skb, config_field!(offsets.skb_len))?;
    let avail = if (len as u64) < u64::from(skb_len) {
        len as u64
    } else {
        u64::from(skb_len)
    };
    let mut pos: u64 = 0;
    let mut i = 0;
    while i < MAX_REPLIES {
        if pos + NLMSG_HDRLEN > avail {
            break;
        }
        // struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }
        let hdr = read::<[u32; 4]>(data + pos, 0)?;
        let msg_len = u64::from(hdr[0]);
        if msg_len < NLMSG_HDRLEN {
            break;
        }
        if hdr[1] as u16 == NLMSG_ERROR && pos + NLMSG_HDRLEN + 20 <= avail {
            // struct nlmsgerr { int error; struct nlmsghdr msg; }
            let err = read::<[u32; 5]>(data + pos + NLMSG_HDRLEN, 0)?;
            let orig_type = err[2] as u16;
            if is_removal_type(orig_type) {
                report(sk, pid_tgid, err[3], err[0] as i32, orig_type);
            }
        }
        pos += (msg_len + 3) & !3;
        i += 1;
    }
    Some(())
}
