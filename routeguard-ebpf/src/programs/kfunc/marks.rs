//! Why a removal happens, remembered while the function that causes it runs.
//!
//! `MARKS[tid]` holds the outermost marked function on a thread and what it means; its fexit
//! clears the mark only if it set it. `GC[cpu]` is set while `fib6_run_gc` runs on a CPU
//! (it holds `fib6_gc_lock` with bottom halves off, so nothing else runs there meanwhile).

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use routeguard_common::mark;

/// tid → (mark, owner): the outermost marked function running on that thread.
#[map]
pub static MARKS: LruHashMap<u32, Mark> = LruHashMap::with_max_entries(4096, 0);

/// Non-zero while `fib6_run_gc` runs on this CPU.
#[map]
pub static GC: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Mark {
    pub mark: u16,
    /// Which function set it (see `owner`).
    pub owner: u16,
    pub _pad: u32,
    /// An argument of the owner the removal needs (`fib_table_delete`: its `fib_config *`).
    pub arg: u64,
}

/// Functions that set marks.
pub mod owner {
    pub const FIB_TABLE_DELETE: u16 = 1;
    pub const FIB_NETDEV_EVENT: u16 = 2;
    pub const FIB_INETADDR_EVENT: u16 = 3;
    pub const ADDRCONF_NOTIFY: u16 = 4;
    pub const IPV6_DEL_ADDR: u16 = 5;
    pub const CLEANUP_NET: u16 = 6;
    pub const UNREGISTER_NETDEVICE: u16 = 7;
}

/// NETDEV_* event numbers (include/linux/netdevice.h, stable: an enum userspace never sees,
/// but unchanged since 2.6).
pub const NETDEV_DOWN: u64 = 2;
pub const NETDEV_UNREGISTER: u64 = 6;

#[inline(always)]
fn tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

/// Sets the mark for this thread unless an outer function already did.
#[inline(always)]
pub fn enter(value: u16, by: u16, arg: u64) {
    if value == mark::NONE {
        return;
    }
    let tid = tid();
    // SAFETY: a lookup only; the value is copied out.
    if unsafe { MARKS.get(&tid) }.is_some() {
        return;
    }
    let _ = MARKS.insert(
        &tid,
        &Mark {
            mark: value,
            owner: by,
            _pad: 0,
            arg,
        },
        0,
    );
}

/// Clears this thread's mark if `by` set it.
#[inline(always)]
pub fn exit(by: u16) {
    let tid = tid();
    // SAFETY: a lookup only; the value is copied out.
    let owned = unsafe { MARKS.get(&tid) }.is_some_and(|m| m.owner == by);
    if owned {
        let _ = MARKS.remove(&tid);
    }
}

/// This thread's mark, with its owner and argument.
#[inline(always)]
pub fn get() -> Option<Mark> {
    let tid = tid();
    // SAFETY: a lookup only; the value is copied out.
    unsafe { MARKS.get(&tid) }.copied()
}

#[inline(always)]
pub fn set_gc(on: bool) {
    if let Some(slot) = GC.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot, only touched by this CPU.
        unsafe { *slot = u32::from(on) };
    }
}

#[inline(always)]
pub fn in_gc() -> bool {
    // SAFETY: a per-CPU slot, only touched by this CPU.
    GC.get_ptr(0).is_some_and(|v| unsafe { *v } != 0)
}

use aya_ebpf::{
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};

/// A notifier's mark for a netdev event: link down or link removed.
#[inline(always)]
fn netdev_mark(event: u64) -> u16 {
    match event {
        NETDEV_DOWN => mark::LINK_DOWN,
        NETDEV_UNREGISTER => mark::LINK_REMOVED,
        _ => mark::NONE,
    }
}

// static int fib_netdev_event(struct notifier_block *this, unsigned long event, void *ptr)
// — IPv4's netdev notifier (fib_disable_ip → fib_sync_down_dev + fib_flush); 6.1 … 6.18.
#[fentry(function = "fib_netdev_event")]
pub fn fib_netdev_event_entry(ctx: FEntryContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    enter(netdev_mark(ctx.arg(1)), owner::FIB_NETDEV_EVENT, 0);
    0
}

#[fexit(function = "fib_netdev_event")]
pub fn fib_netdev_event_exit(_ctx: FExitContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    exit(owner::FIB_NETDEV_EVENT);
    0
}

// static int fib_inetaddr_event(struct notifier_block *this, unsigned long event, void *ptr)
// — NETDEV_DOWN here means an IPv4 address was removed (fib_del_ifaddr); 6.1 … 6.18.
#[fentry(function = "fib_inetaddr_event")]
pub fn fib_inetaddr_event_entry(ctx: FEntryContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    let event: u64 = ctx.arg(1);
    if event == NETDEV_DOWN {
        enter(mark::ADDRESS_REMOVED, owner::FIB_INETADDR_EVENT, 0);
    }
    0
}

#[fexit(function = "fib_inetaddr_event")]
pub fn fib_inetaddr_event_exit(_ctx: FExitContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    exit(owner::FIB_INETADDR_EVENT);
    0
}

// static int addrconf_notify(struct notifier_block *this, unsigned long event, void *ptr)
// — IPv6's netdev notifier (addrconf_ifdown → rt6_disable_ip); 6.1 … 6.18.
#[fentry(function = "addrconf_notify")]
pub fn addrconf_notify_entry(ctx: FEntryContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    enter(netdev_mark(ctx.arg(1)), owner::ADDRCONF_NOTIFY, 0);
    0
}

#[fexit(function = "addrconf_notify")]
pub fn addrconf_notify_exit(_ctx: FExitContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    exit(owner::ADDRCONF_NOTIFY);
    0
}

// static void ipv6_del_addr(struct inet6_ifaddr *ifp) — an IPv6 address removed, with its
// prefix route; 6.1 … 6.18 (attached only where BTF has it).
#[fentry(function = "ipv6_del_addr")]
pub fn ipv6_del_addr_entry(_ctx: FEntryContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    enter(mark::ADDRESS_REMOVED, owner::IPV6_DEL_ADDR, 0);
    0
}

#[fexit(function = "ipv6_del_addr")]
pub fn ipv6_del_addr_exit(_ctx: FExitContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    exit(owner::IPV6_DEL_ADDR);
    0
}

// static void cleanup_net(struct work_struct *work) — the netns workqueue dismantling
// namespaces; 6.1 … 6.18.
#[fentry(function = "cleanup_net")]
pub fn cleanup_net_entry(_ctx: FEntryContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    enter(mark::NETNS_EXIT, owner::CLEANUP_NET, 0);
    0
}

#[fexit(function = "cleanup_net")]
pub fn cleanup_net_exit(_ctx: FExitContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    exit(owner::CLEANUP_NET);
    0
}

// void unregister_netdevice_many_notify(struct list_head *head, u32 portid,
//                                       const struct nlmsghdr *nlh) — every link removal;
// it takes the links down first, so without this mark their routes would say link-down.
// Checked on 6.1, 6.12, 6.18.
#[fentry(function = "unregister_netdevice_many_notify")]
pub fn unregister_netdevice_entry(_ctx: FEntryContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    enter(mark::LINK_REMOVED, owner::UNREGISTER_NETDEVICE, 0);
    0
}

#[fexit(function = "unregister_netdevice_many_notify")]
pub fn unregister_netdevice_exit(_ctx: FExitContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    exit(owner::UNREGISTER_NETDEVICE);
    0
}
