//! Nexthop objects: every removal (request, link down, netns exit) passes `remove_nexthop`.

use aya_ebpf::{macros::fentry, programs::FEntryContext};
use routeguard_common::hook;

use super::{
    kconfig_field,
    record::{begin, netns_ino, nl_info, send},
};
use crate::programs::kern::read;

// static void remove_nexthop(struct net *net, struct nexthop *nh, struct nl_info *nlinfo)
// — checked on 6.1, 6.12, 6.18; `nlinfo` is null for flushes.
#[fentry(function = "remove_nexthop")]
pub fn remove_nexthop(ctx: FEntryContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    let _ = try_remove_nexthop(&ctx);
    0
}

#[inline(always)]
fn try_remove_nexthop(ctx: &FEntryContext) -> Option<()> {
    let net: u64 = ctx.arg(0);
    let nh: u64 = ctx.arg(1);
    let info: u64 = ctx.arg(2);
    let (rec, _) = begin(hook::NEXTHOP)?;
    rec.netns_ino = netns_ino(net);
    nl_info(rec, info);
    rec.nh_id = read::<u32>(nh, kconfig_field!(offsets.nh_id)).unwrap_or(0);
    send(rec);
    Some(())
}
