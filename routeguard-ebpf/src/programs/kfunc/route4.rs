//! IPv4 routes: every alias leaving a table, and requests the kernel refused.

use aya_ebpf::{
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};
use routeguard_common::{context, hook, mark, KernelRecord};

use super::{
    kconfig_field,
    marks::{self, owner},
    record::{begin, emit, netns_ino, netns_ino_typed, nh_common, nl_info, send},
    requests,
};
use crate::programs::{
    ioctl,
    kern::{load, read},
    rare::{self, site},
};

/// What a route loses without `fib_config.fc_nlinfo` (for the missing-offset line).
const WITHOUT_NLINFO: &str =
    "IPv4 route records lack the request's header, port and namespace from fib_table_delete";

const AF_INET: u8 = 2;

// int fib_table_delete(struct net *net, struct fib_table *tb, struct fib_config *cfg,
//                      struct netlink_ext_ack *extack) — checked on 6.1, 6.12, 6.18.
// Entry: marks the thread, so the alias it removes is a request (unless an outer notifier,
// e.g. fib_del_ifaddr's fib_magic, already marked it), and keeps `cfg` for its header.
#[fentry(function = "fib_table_delete")]
pub fn fib_table_delete_entry(ctx: FEntryContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    marks::enter(mark::REQUEST, owner::FIB_TABLE_DELETE, ctx.arg::<u64>(2));
    0
}

// Exit: a refused request (the route was not there) is reported from what it asked for.
#[fexit(function = "fib_table_delete")]
pub fn fib_table_delete_exit(ctx: FExitContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    let _ = try_fib_table_delete_exit(&ctx);
    marks::exit(owner::FIB_TABLE_DELETE);
    0
}

#[inline(always)]
fn try_fib_table_delete_exit(ctx: &FExitContext) -> Option<()> {
    let ret: i64 = ctx.arg(4);
    let ret = ret as i32;
    let mine = marks::get().is_some_and(|m| m.owner == owner::FIB_TABLE_DELETE);
    if ret == 0 || !mine {
        return None;
    }
    let net: u64 = ctx.arg(0);
    let cfg: u64 = ctx.arg(2);
    let (rec, _) = begin(hook::ROUTE4_FAILED)?;
    rec.context |= context::HAS_RET;
    rec.ret = ret;
    rec.family = AF_INET;
    rec.netns_ino = netns_ino(net);
    let nlinfo = kconfig_field!(offsets.fc_nlinfo);
    if rare::offset_known(
        nlinfo,
        site::OFFSET_FC_NLINFO,
        "fib_config.fc_nlinfo",
        WITHOUT_NLINFO,
    ) {
        nl_info(rec, cfg + u64::from(nlinfo));
    }
    rec.dst_len = read::<u8>(cfg, kconfig_field!(offsets.fc_dst_len)).unwrap_or(0);
    rec.protocol = read::<u8>(cfg, kconfig_field!(offsets.fc_protocol)).unwrap_or(0);
    rec.scope = read::<u8>(cfg, kconfig_field!(offsets.fc_scope)).unwrap_or(0);
    rec.route_type = read::<u8>(cfg, kconfig_field!(offsets.fc_type)).unwrap_or(0);
    rec.table = read::<u32>(cfg, kconfig_field!(offsets.fc_table)).unwrap_or(0);
    rec.priority = read::<u32>(cfg, kconfig_field!(offsets.fc_priority)).unwrap_or(0);
    rec.oif = read::<u32>(cfg, kconfig_field!(offsets.fc_oif)).unwrap_or(0);
    if let Some(dst) = read::<[u8; 4]>(cfg, kconfig_field!(offsets.fc_dst)) {
        rec.dst[..4].copy_from_slice(&dst);
    }
    if let Some(gw) = read::<[u8; 4]>(cfg, kconfig_field!(offsets.fc_gw4)) {
        if gw != [0; 4] {
            rec.gw_family = AF_INET;
            rec.gateway[..4].copy_from_slice(&gw);
        }
    }
    send(rec);
    Some(())
}

// static void fib_notify_alias_delete(struct net *net, u32 key, struct hlist_head *fah,
//                                     struct fib_alias *fa_to_delete,
//                                     struct netlink_ext_ack *extack) — since 5.9; checked on
// 6.1, 6.12, 6.18. Called for every alias fib_table_delete and fib_table_flush remove, so a
// link-down or address flush gives one record per route.
#[fentry(function = "fib_notify_alias_delete")]
pub fn fib_notify_alias_delete(ctx: FEntryContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    let _ = try_alias(&ctx);
    0
}

#[inline(always)]
fn try_alias(ctx: &FEntryContext) -> Option<()> {
    // All three are typed arguments: their fields are plain loads (`kern::load`).
    let net: u64 = ctx.arg(0);
    let key: u64 = ctx.arg(1);
    let fa: u64 = ctx.arg(3);
    let (rec, held) = begin(hook::ROUTE4)?;
    rec.family = AF_INET;
    rec.netns_ino = netns_ino_typed(net);
    // The trie key is the destination in host byte order.
    rec.dst[..4].copy_from_slice(&(key as u32).to_be_bytes());
    alias(rec, fa);
    match held {
        // fib_table_delete's own hooks (attached when the request hooks are not).
        Some(m) if m.owner == owner::FIB_TABLE_DELETE => {
            let nlinfo = kconfig_field!(offsets.fc_nlinfo);
            if rare::offset_known(
                nlinfo,
                site::OFFSET_FC_NLINFO,
                "fib_config.fc_nlinfo",
                WITHOUT_NLINFO,
            ) {
                nl_info(rec, m.arg + u64::from(nlinfo));
            }
            send(rec);
        }
        // No notifier explains it: a route delete this process asked for, if the request
        // hooks have it inside one (netlink: with its header, claimed here; or a route ioctl).
        // Routes a nexthop delete takes with it are not that request's object.
        None if rec.context & (context::GC | context::KTHREAD) == 0 => {
            if requests::claim_route_delete(rec) {
                rec.mark = mark::REQUEST;
            } else if ioctl::in_flight() {
                rec.mark = mark::REQUEST;
            }
            emit(rec);
        }
        _ => send(rec),
    }
    Some(())
}

/// The removed alias: prefix length, TOS, type, table, and its `fib_info` (protocol, scope,
/// metric, preferred source, nexthop object or first nexthop).
#[inline(always)]
fn alias(rec: &mut KernelRecord, fa: u64) {
    if let Some(slen) = load::<u8>(fa, kconfig_field!(offsets.fa_slen)) {
        rec.dst_len = 32u8.saturating_sub(slen);
    }
    rec.tos = load::<u8>(fa, kconfig_field!(offsets.fa_dscp)).unwrap_or(0);
    rec.route_type = load::<u8>(fa, kconfig_field!(offsets.fa_type)).unwrap_or(0);
    rec.table = load::<u32>(fa, kconfig_field!(offsets.fa_tb_id)).unwrap_or(0);
    let Some(fi) = load::<u64>(fa, kconfig_field!(offsets.fa_info)).filter(|&fi| fi != 0) else {
        return;
    };
    rec.protocol = load::<u8>(fi, kconfig_field!(offsets.fi_protocol)).unwrap_or(0);
    rec.scope = load::<u8>(fi, kconfig_field!(offsets.fi_scope)).unwrap_or(0);
    rec.priority = load::<u32>(fi, kconfig_field!(offsets.fi_priority)).unwrap_or(0);
    if let Some(src) = load::<u32>(fi, kconfig_field!(offsets.fi_prefsrc)) {
        // Network byte order in memory, as loaded: keep the bytes as they are.
        rec.prefsrc[..4].copy_from_slice(&src.to_ne_bytes());
    }
    match load::<u64>(fi, kconfig_field!(offsets.fi_nh)) {
        Some(nh) if nh != 0 => {
            rec.nh_id = load::<u32>(nh, kconfig_field!(offsets.nh_id)).unwrap_or(0);
        }
        _ => {
            let first = kconfig_field!(offsets.fi_fib_nh);
            let common = kconfig_field!(offsets.fib_nh_common);
            const LOSES: &str = "IPv4 route records lack their device and gateway";
            if rare::offset_known(first, site::OFFSET_FIB_NH, "fib_info.fib_nh", LOSES)
                && rare::offset_known(common, site::OFFSET_FIB_NH, "fib_nh.nh_common", LOSES)
            {
                nh_common(rec, fi + u64::from(first) + u64::from(common));
            }
        }
    }
}
