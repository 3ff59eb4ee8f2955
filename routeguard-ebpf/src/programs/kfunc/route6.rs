//! IPv6 routes: every removal, whatever its cause, passes `fib6_del`.

use aya_ebpf::{
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};
use routeguard_common::hook;

use super::{
    kconfig_field, marks,
    record::{begin, nh_common, nl_info, send},
};
use crate::programs::{
    kern::{load, read},
    rare::{self, site},
};

const AF_INET6: u8 = 10;

// int fib6_del(struct fib6_info *rt, struct nl_info *info) — checked on 6.1, 6.12, 6.18.
// Exit, so only removals that happened are reported; `rt` is still valid (the caller holds a
// reference, or its memory is freed only after an RCU grace period).
#[fexit(function = "fib6_del")]
pub fn fib6_del(ctx: FExitContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    let _ = try_fib6_del(&ctx);
    0
}

#[inline(always)]
fn try_fib6_del(ctx: &FExitContext) -> Option<()> {
    let ret: i64 = ctx.arg(2);
    if ret != 0 {
        return None;
    }
    let rt: u64 = ctx.arg(0);
    let info: u64 = ctx.arg(1);
    let (rec, _) = begin(hook::ROUTE6)?;
    rec.family = AF_INET6;
    nl_info(rec, info);
    if let Some(dst) = read::<[u8; 16]>(rt, kconfig_field!(offsets.f6_dst)) {
        rec.dst = dst;
    }
    // `rt` is a typed argument: its scalar and pointer fields are plain loads; the addresses
    // (arrays in BTF) are read with the helper.
    rec.dst_len = load::<u32>(rt, kconfig_field!(offsets.f6_dst_len)).unwrap_or(0) as u8;
    if let Some(src) = read::<[u8; 16]>(rt, kconfig_field!(offsets.f6_prefsrc)) {
        rec.prefsrc = src;
    }
    rec.priority = load::<u32>(rt, kconfig_field!(offsets.f6_metric)).unwrap_or(0);
    rec.protocol = load::<u8>(rt, kconfig_field!(offsets.f6_protocol)).unwrap_or(0);
    rec.route_type = load::<u8>(rt, kconfig_field!(offsets.f6_type)).unwrap_or(0);
    if let Some(table) = load::<u64>(rt, kconfig_field!(offsets.f6_table)) {
        rec.table = load::<u32>(table, kconfig_field!(offsets.tb6_id)).unwrap_or(0);
    }
    let nh = load::<u64>(rt, kconfig_field!(offsets.f6_nh)).unwrap_or(0);
    if nh != 0 {
        rec.nh_id = load::<u32>(nh, kconfig_field!(offsets.nh_id)).unwrap_or(0);
    } else {
        let first = kconfig_field!(offsets.f6_fib6_nh);
        let common = kconfig_field!(offsets.fib6_nh_common);
        const LOSES: &str = "IPv6 route records lack their device and gateway";
        if rare::offset_known(first, site::OFFSET_FIB6_NH, "fib6_info.fib6_nh", LOSES)
            && rare::offset_known(common, site::OFFSET_FIB6_NH, "fib6_nh.nh_common", LOSES)
        {
            nh_common(rec, rt + u64::from(first) + u64::from(common));
        }
    }
    send(rec);
    Some(())
}

// int fib6_run_gc(unsigned long expires, struct net *net, bool force) — checked on 6.1, 6.12,
// 6.18. Everything fib6_del removes under it has expired. It runs under
// spin_lock_bh(fib6_gc_lock), so a per-CPU mark is exact.
#[fentry(function = "fib6_run_gc")]
pub fn fib6_run_gc_entry(_ctx: FEntryContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    marks::set_gc(true);
    0
}

#[fexit(function = "fib6_run_gc")]
pub fn fib6_run_gc_exit(_ctx: FExitContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    marks::set_gc(false);
    0
}
