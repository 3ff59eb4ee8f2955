//! Policy rules, both families: the request as the kernel received it, and its result.

use aya_ebpf::{macros::fexit, programs::FExitContext};
use routeguard_common::{context, hook};

use super::{
    kconfig_field,
    record::{begin, copy_msg, header_from, netns_ino, send},
    requests::portid,
};
use crate::programs::kern::read;

// int fib_nl_delrule(struct sk_buff *skb, struct nlmsghdr *nlh, struct netlink_ext_ack *extack)
// — checked on 6.1, 6.12, 6.18. Runs in the sender's context (rtnetlink_rcv_msg).
#[fexit(function = "fib_nl_delrule")]
pub fn fib_nl_delrule(ctx: FExitContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    let _ = try_fib_nl_delrule(&ctx);
    0
}

#[inline(always)]
fn try_fib_nl_delrule(ctx: &FExitContext) -> Option<()> {
    let skb: u64 = ctx.arg(0);
    let nlh: u64 = ctx.arg(1);
    let ret: i64 = ctx.arg(3);
    let (rec, _) = begin(hook::RULE)?;
    rec.context |= context::HAS_RET;
    rec.ret = ret as i32;
    header_from(rec, nlh);
    // The sender's port: a removal whose request the send hooks never saw (io_uring, compat)
    // is still named by the socket it came from.
    rec.portid = portid(skb);
    // struct fib_rule_hdr follows the 16-byte nlmsghdr; its first byte is the family (UAPI).
    rec.family = read::<u8>(nlh, 16).unwrap_or(0);
    if let Some(sk) = read::<u64>(skb, kconfig_field!(offsets.skb_sk)) {
        if let Some(net) = read::<u64>(sk, kconfig_field!(offsets.sock_net)) {
            rec.netns_ino = netns_ino(net);
        }
    }
    copy_msg(rec, nlh);
    send(rec);
    Some(())
}
